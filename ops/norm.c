/*
 * norm.c - fused normalisation: batch_norm over every dim but the channel
 * dim 1 of an (N, C, *) input, layer_norm over the trailing dims, and
 * group_norm over each sample's groups of channels.
 *
 * Statistics are accumulated in double for both dtypes (as PyTorch does on the
 * CPU), with two passes (mean, then squared deviations), or for batch norm over
 * [N, C] one pass of shifted sums (see the column kernels).  The node keeps the
 * mean and 1/√(var + ε) of each group in its saved tensor (float64), so the
 * adjoint needs x and the weight only; it is the closed form below, one pass
 * for the two sums of each group and one for dx.  batch_norm_relu keeps the
 * forward's per-channel scale and shift there too (rows 2 and 3), from which
 * its adjoint remakes relu's mask out of x without reading y.
 *
 * Batch norm stays in these loops rather than oneDNN's batch-normalisation
 * primitive: on plain NCHW data oneDNN 2.6 runs its generic ncsp_bnorm kernel,
 * slower than them (cnn_fashion's [128, 32, 28, 28], one thread: forward 8.4 ms
 * against 2.7, backward 9.7 against about 6), and its blocked layouts would add
 * two reorders per call; it also sums in float32, these loops in float64.
 */
#include <math.h>
#include <string.h>
#include <omp.h>
#include "core/iter.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "core/sum_pairs.h"
#include "autograd/tape.h"
#include "agrad/ops.h"
#include "ops/jvp.h"
#include "ops/norm.h"
#include "ops/bn_cols512.h"

/* Reads a 1-D tensor (any strides) into v as double; v has numel(t) entries. */
static void read_vec(const ag_tensor *t, double *v) { ag_copy_to(t, v, ag_numel(t), AG_F64); }

/* Writes v into a 1-D tensor of any strides, converting to its dtype. */
static void write_vec(ag_tensor *t, const double *v) {
    char *p = ag__ptr(t);
    int64_t step = t->shape[0] > 1 ? t->stride[0] * (int64_t)ag_dtype_size(t->dtype) : 0; /* one element: any stride */
    for (int64_t i = 0; i < t->shape[0]; i++, p += step) {
        if (t->dtype == AG_F64) *(double *)p = v[i];
        else *(float *)p = (float)v[i];
    }
}

/* A new unowned contiguous tensor of dtype and shape holding v (converted). */
static ag_tensor *tensor_of(const double *v, ag_dtype dtype, int ndim, const int64_t *shape) {
    ag_tensor *t = ag__new_unowned(dtype, ndim, shape, false);
    if (!t) return NULL;
    int64_t n = ag_numel(t);
    for (int64_t i = 0; i < n; i++) {
        if (dtype == AG_F64) ((double *)ag__ptr(t))[i] = v[i];
        else ((float *)ag__ptr(t))[i] = (float)v[i];
    }
    return t;
}

/* Checks that an optional per-channel / per-feature tensor p has x's dtype and the given shape. */
static ag_status check_param(const char *op, const char *what, const ag_tensor *p, const ag_tensor *x, int ndim,
                             const int64_t *shape) {
    if (!p) return AG_OK;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR], s3[AG_SHAPE_STR];
    if (p->dtype != x->dtype)
        return ag__fail(AG_ERR_DTYPE, "%s: %s is %s but the input is %s", op, what, ag_dtype_name(p->dtype),
                        ag_dtype_name(x->dtype));
    if (p->ndim != ndim || memcmp(p->shape, shape, sizeof(int64_t) * (size_t)ndim) != 0)
        return ag__fail(AG_ERR_SHAPE, "%s: %s has shape %s, expected %s for the input %s", op, what, ag__tshape(s1, p),
                        ag__shape_str(s2, ndim, shape), ag__tshape(s3, x));
    return AG_OK;
}

/* Channels a thread's block of an [N, C] batch norm holds at least.  Each thread walks all N rows
 * of its block, so with short blocks it reads runs of a row far apart, and on two threads the blocks
 * of 256 channels (1 KiB of float32 a row) ran slower than one thread doing all of them:
 * batch_norm_relu_dropout forward + backward alone, hot, two threads (wall, chrt -f 10, the AMD
 * Zen 5 host), blocks / one thread, µs: [256, 512] 176-211 / 118-126, [512, 512] 327 / 221,
 * [1024, 512] 631 / 430, [2048, 1024] 1993 / 2063 (even), [256, 2048] 398 / 478 (blocks of 1024
 * pay).  bench_steps mlp_bn_dropout (three [256, 512] layers), two threads, 5 pairs at load 18-21:
 * 4804-5197 -> 4628-4738 µs a step (the regions timed: 4328-4348 -> 4182-4200). */
#define BN_COLS_SHARE 1024

/* Threads of an [N, C] batch norm: ag__threads_for(N·C), at most one per BN_COLS_SHARE channels. */
static int bn_cols_threads(int64_t N, int64_t C) {
    const int nt = ag__threads_for(N * C);
    return C / BN_COLS_SHARE < nt ? (C / BN_COLS_SHARE > 1 ? (int)(C / BN_COLS_SHARE) : 1) : nt;
}

int ag__bn_cols_threads(int64_t N, int64_t C) { return bn_cols_threads(N, C); }

/* Runs body once per block of channels [c0, c1), the blocks split over threads when the [N, C]
 * input (of one chunk of rows: bn_chunk_rows) is large and wide (bn_cols_threads).  Batch norm over [N, C] (L = 1,
 * BatchNorm1d's usual input) loops over channels innermost, so that its loops vectorize. */
#define BN_CHANNEL_BLOCKS(N, C, c0, c1, ...)                                                   \
    do {                                                                                       \
        int nt_ = bn_cols_threads((N), (C));                                                   \
        if (nt_ == 1) { /* no parallel region: even a one-thread team costs ~1 µs */           \
            const int64_t c0 = 0, c1 = (C);                                                    \
            __VA_ARGS__                                                                        \
        } else {                                                                               \
            _Pragma("omp parallel for num_threads(nt_) schedule(static)")                      \
            for (int b_ = 0; b_ < nt_; b_++) {                                                 \
                int64_t c0 = (C) * b_ / nt_ / 16 * 16, c1 = b_ == nt_ - 1 ? (C) : (C) * (b_ + 1) / nt_ / 16 * 16; \
                __VA_ARGS__                                                                    \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* Runs body once per block of channels [c0, c1) of an [N, C, L] input (L > 1), the
 * channels split over threads when the input is large: each channel's sums stay on one
 * thread in one order, so the result does not depend on the thread count. */
#define BN_PLANE_BLOCKS(N, C, L, c0, c1, ...)                                                  \
    do {                                                                                       \
        int nt_ = ag__threads_for((N) * (C) * (L));                                            \
        if (nt_ > (C)) nt_ = (int)(C);                                                         \
        if (nt_ <= 1) {                                                                        \
            const int64_t c0 = 0, c1 = (C);                                                    \
            __VA_ARGS__                                                                        \
        } else {                                                                               \
            _Pragma("omp parallel for num_threads(nt_) schedule(static)")                      \
            for (int b_ = 0; b_ < nt_; b_++) {                                                 \
                const int64_t c0 = ag__share_start(C, b_, nt_), c1 = ag__share_start(C, b_ + 1, nt_); \
                __VA_ARGS__                                                                    \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* Values of dropout's mask batch_norm_relu_dropout makes at a time (8 KiB of float64 at most: in L1) */
#define BN_DROP_BLOCK 1024

/* Bytes of x a block of channels of batch norm's training forward over planes holds at most (bn_planes_train),
 * with its y, within the core's L2 (2 MiB on Sapphire Rapids). */
#define BN_BLOCK_BYTES ((int64_t)1 << 19)

/* Bytes of a plane whose relu adjoint batch_norm_relu's adjoint makes in an L1 buffer from x (bn_planes_backward);
 * larger planes go through a scratch tensor. */
#define BN_RELU_PLANE_BYTES 16384

/* Images ahead whose run of a block's planes batch norm's training forward over planes prefetches */
#define BN_PREFETCH_AHEAD 2

/* Asks for the bytes [p, p + bytes) to come into the cache, for writing if write: a run of planes of one image,
 * a few images ahead of the pass over a block of channels (bn_planes_train), whose runs (bn1 of cnn_fashion:
 * one 3 KB plane a run, 100 KB apart) are too short for the hardware prefetchers to follow. */
static inline void bn_prefetch_run(const void *p, int64_t bytes, bool write) {
    const char *c = p;
    for (int64_t o = 0; o < bytes; o += 64) {
        if (write) __builtin_prefetch(c + o, 1, 3);
        else __builtin_prefetch(c + o, 0, 3);
    }
}

/* ---- batch norm over [N, C] by chunks of rows -------------------------------------------------------------
 * Split by blocks of channels over two threads (each thread all N rows of its half of every row, written by
 * the other core the pass before), batch norm over [N, C] ran slower than on one thread (BN_COLS_SHARE), so
 * [256, 512] ran on one thread of two.  From two chunks of rows its sums go by fixed chunks of K rows instead
 * (K from the row count alone: BN_CHUNK_ROWS, or more to keep at most BN_MAX_CHUNKS chunks), as linear_relu's
 * bias sums (ops/matmul.c): each chunk's float64 sums from 0 in row order into its own partial (whole 64-byte
 * lines, no line shared between partials), a thread taking whole chunks (a contiguous run of rows), then each
 * channel's sum = Σ_k partial_k in chunk order, the channels split over the threads; the elementwise passes
 * (y, dx) by the same rows.  One thread makes the same chunks: the bits do not depend on the thread count.
 * Up to BN_CHUNK_ROWS rows: one chunk, each channel's sums in row order (BN_CHANNEL_BLOCKS). */
#define BN_CHUNK_ROWS 64 /* rows of a chunk, at least */
#define BN_MAX_CHUNKS 16 /* chunks at most */
/* Columns of the block of relu's and dropout's adjoint that batch norm's adjoint sums make in L1 (bn_cols_fold_sums:
 * four rows of them, 4 KiB of float32) */
#define BN_FOLD_COLS 256

/* Rows of a chunk of batch norm over [N, C] (a multiple of 8 from BN_CHUNK_ROWS up); N > that: by chunks. */
static int64_t bn_chunk_rows(int64_t N) {
    const int64_t k = (N + BN_MAX_CHUNKS - 1) / BN_MAX_CHUNKS;
    return k <= BN_CHUNK_ROWS ? BN_CHUNK_ROWS : (k + 7) / 8 * 8;
}

int64_t ag__bn_chunk_rows(int64_t N) { return bn_chunk_rows(N); }

/* Doubles of scratch the chunks' partials of batch norm over [N, C] take (two rows of whole 64-byte lines a
 * chunk, and 8 to align them: line_align); 0 for one chunk. */
static int64_t bn_cols_part_len(int64_t N, int64_t C) {
    const int64_t K = bn_chunk_rows(N);
    return N > K ? 2 * ((N + K - 1) / K) * ((C + 7) / 8 * 8) + 8 : 0;
}

/* Elements from which batch norm's adjoint over [N, C] by chunks of rows runs on all threads under
 * OMP_WAIT_POLICY=passive (bn_rows_threads) */
#define BN_PASSIVE_ELEMS ((int64_t)1 << 19)

/* Threads of batch norm over [N, C] by chunks of rows (N > bn_chunk_rows(N)): ag__threads_for(N·C), at most one
 * a chunk.  Under OMP_WAIT_POLICY=passive, where each of a region's waits (two barriers and the end) wakes a
 * sleeping thread, one thread for the training forward (forward) and for an adjoint below BN_PASSIVE_ELEMS
 * elements.  batch_norm_relu_dropout alone, two threads, wall clock, chrt -f 10, the AMD host, medians, µs,
 * before (the channel blocks) / by chunks: forward [1024, 512] 204-246 / 285-307, [256, 2048] 272-284 / 295-320
 * passive; 204-206 / 143-151 and 189-216 / 154 with libgomp's default policy.  Forward + adjoint passive:
 * [256, 512] 300-366 / 378-393 (the forward on one thread), [1024, 512] 1022-1198 / 800-854. */
static int bn_rows_threads(int64_t N, int64_t C, bool forward) {
    const int64_t K = bn_chunk_rows(N), chunks = (N + K - 1) / K;
    const int nt = ag__omp_passive && (forward || N * C < BN_PASSIVE_ELEMS) ? 1 : ag__threads_for(N * C);
    return nt > chunks ? (int)chunks : nt;
}

int ag__bn_rows_threads(int64_t N, int64_t C, bool forward) { return bn_rows_threads(N, C, forward); }

/* p rounded up to a 64-byte boundary (p from an allocation 64 bytes longer than what is used). */
static double *line_align(double *p) { return (double *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

/* s[c] = Σ_k part[2k·ldp + c], q[c] = Σ_k part[(2k + 1)·ldp + c] over [c0, c1), k = 0, 1, ... chunks - 1 in
 * that order (the chunk loop outside, so that the column loop vectorises: the same adds per column) */
AG_VEC_CLONES static void bn_chunks_combine(double *restrict s, double *restrict q, const double *restrict part,
                                            int64_t ldp, int64_t chunks, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) s[c] = part[c], q[c] = part[ldp + c];
    for (int64_t k = 1; k < chunks; k++) {
        const double *restrict pm = part + 2 * k * ldp, *restrict pq = pm + ldp;
        for (int64_t c = c0; c < c1; c++) s[c] += pm[c], q[c] += pq[c];
    }
}

/* ---- the AVX-512 kernels of batch norm over [N, C] float32 (ops/bn_cols512.h) ------------------------------
 * Each hook runs its kernel where it applies (float32, AG_VEC_512(), ag__bn_cols_avx512) and returns whether it
 * did; float64 never does.  The same bits as the C kernels in every case. */
bool ag__bn_cols_avx512 = true;

static bool bn_cols_wide(void) {
#ifdef AG_X86_INTRINSICS
    return ag__bn_cols_avx512 && AG_VEC_512();
#else
    return false;
#endif
}

/* bn_cols_grad_sums (y NULL) or bn_cols_fold_chunk (g = y <= 0 ? 0 : dy·s) over rows [n0, n1), columns [c0, c1) */
static bool bn_wide_sums_f32(const float *y, const float *dy, const float *x, int64_t n0, int64_t n1, int64_t C,
                             int64_t c0, int64_t c1, float s, const float *mt, double *sdy, double *sdyx) {
    if (!bn_cols_wide()) return false;
#ifdef AG_X86_INTRINSICS
    bn_cols_grad_sums_f32_512(y, dy, x, n0, n1, C, c0, c1, s, mt, sdy, sdyx);
#else
    (void)y, (void)dy, (void)x, (void)n0, (void)n1, (void)C, (void)c0, (void)c1, (void)s, (void)mt, (void)sdy, (void)sdyx;
#endif
    return true;
}
static bool bn_wide_sums_f64(const double *y, const double *dy, const double *x, int64_t n0, int64_t n1, int64_t C,
                             int64_t c0, int64_t c1, double s, const double *mt, double *sdy, double *sdyx) {
    (void)y, (void)dy, (void)x, (void)n0, (void)n1, (void)C, (void)c0, (void)c1, (void)s, (void)mt, (void)sdy, (void)sdyx;
    return false;
}

/* bn_cols_apply_drop over rows [n0, n1), columns [c0, c1), where every row's first element is even (C, c0 even) */
static bool bn_wide_drop_f32(float *y, const float *x, int64_t n0, int64_t n1, int64_t C, int64_t c0, int64_t c1,
                             const double *scale, const double *shift, ag_keep_key k, double s) {
    if (!bn_cols_wide() || C % 2 || c0 % 2) return false;
#ifdef AG_X86_INTRINSICS
    bn_cols_apply_drop_f32_512(y, x, n0, n1, C, c0, c1, scale, shift, k, (float)s);
#else
    (void)y, (void)x, (void)n0, (void)n1, (void)c1, (void)scale, (void)shift, (void)k, (void)s;
#endif
    return true;
}
static bool bn_wide_drop_f64(double *y, const double *x, int64_t n0, int64_t n1, int64_t C, int64_t c0, int64_t c1,
                             const double *scale, const double *shift, ag_keep_key k, double s) {
    (void)y, (void)x, (void)n0, (void)n1, (void)C, (void)c0, (void)c1, (void)scale, (void)shift, (void)k, (void)s;
    return false;
}

/* ---- kernels, for float and double -------------------------------------------------------------------
 * Batch norm sees x as [N, C, L] (L = product of the dims after 1), layer norm as [R, K] rows. */
#define NORM_KERNELS(SUF, T)                                                                                   \
    /* One plane of L values of a channel (batch norm over [N, C, L], L > 1): each loop vectorises, \
     * the sums in eight float64 accumulators (AG_SUM8).  Forward of [128, 32, 28, 28] on one       \
     * thread: 6.3 ms with one accumulator per plane, 2.7 ms so. */                                 \
    AG_VEC_CLONES static double bn_row_sum_##SUF(const T *restrict r, int64_t L) {                               \
        double s;                                                                                              \
        AG_SUM8(s, L, l, (double)r[l]);                                                                        \
        return s;                                                                                              \
    }                                                                                                          \
    AG_VEC_CLONES static double bn_row_sq_##SUF(const T *restrict r, int64_t L, double m) {                      \
        double q;                                                                                              \
        AG_SUM8(q, L, l, ((double)r[l] - m) * ((double)r[l] - m));                                             \
        return q;                                                                                              \
    }                                                                                                          \
    /* y = x·sc + sh.  This, bn_row_apply_relu and bn_row_grad_x are float64 arithmetic on planes that the     \
     * channel's block holds in L2 (bn_planes_train's apply pass, bn_planes_backward's dx pass): their         \
     * AVX-512 clones convert, multiply and add eight doubles an instruction where AVX2 does four; the same    \
     * bits (no sum, no contraction in ISO C).  cnn_fashion's bn1+relu1 on one thread, forward 2 825 -> 2 591  \
     * µs, backward 4 812 -> 3 666 (session 21).  bn_relu_grad_of_x stays on AVX2: its AVX-512 clone reads     \
     * dy by a zero-masked load, which made that backward 65% slower; so do the sums (AG_SUM8's eight          \
     * accumulators are one chain in AVX-512). */                                                              \
    AG_VEC_CLONES_512 static void bn_row_apply_##SUF(T *restrict y, const T *restrict x, int64_t L, double sc, \
                                                 double sh) {                                                  \
        for (int64_t l = 0; l < L; l++) y[l] = (T)((double)x[l] * sc + sh);                                    \
    }                                                                                                          \
    /* y = relu(x·sc + sh), relu's x <= 0 ? 0 : x (NaN kept) */                                                \
    AG_VEC_CLONES_512 static void bn_row_apply_relu_##SUF(T *restrict y, const T *restrict x, int64_t L, double sc, \
                                                      double sh) {                                             \
        for (int64_t l = 0; l < L; l++) {                                                                      \
            const T v = (T)((double)x[l] * sc + sh);                                                           \
            y[l] = v <= 0 ? 0 : v;                                                                             \
        }                                                                                                      \
    }                                                                                                          \
    AG_VEC_CLONES static void bn_row_grad_sums_##SUF(const T *restrict dy, const T *restrict x, int64_t L,       \
                                                     double m, double *sdy, double *sdyx) {                    \
        double s, sx;                                                                                          \
        AG_SUM8(s, L, l, (double)dy[l]);                                                                       \
        AG_SUM8(sx, L, l, (double)dy[l] * ((double)x[l] - m));                                                 \
        *sdy += s;                                                                                             \
        *sdyx += sx;                                                                                           \
    }                                                                                                          \
    AG_VEC_CLONES_512 static void bn_row_grad_x_##SUF(T *restrict dx, const T *restrict dy, const T *restrict x, \
                                                  int64_t L, double m, double k, double a, double b) {         \
        for (int64_t l = 0; l < L; l++) dx[l] = (T)(k * ((double)dy[l] - a - ((double)x[l] - m) * b));         \
    }                                                                                                          \
    /* Batch norm over [N, C] (L = 1), channels [c0, c1) of each row, the channel loop innermost (one     \
     * lane per channel, so the order of each channel's sum is n = n0, n0 + 1, ... whatever the vector         \
     * width (by chunks of rows, bn_chunk_rows, then in chunk order); no FMA contraction in ISO C mode, so     \
     * the clones give the same bits).  Fewest                                                                 \
     * passes, T arithmetic where float64 adds no accuracy: the statistics are one pass of float64 sums    \
     * of d = x - s about the channel's first value s (Σd, Σd²: σ² = (Σd² - (Σd)²/M)/M loses only as much \
     * as μ is far from s, in float64); y = x·scale + shift stays in float64 (x̂ within 0.5 ulp, where     \
     * float32 would give 2.2: test_reduce); the adjoint's two passes work in T about the mean rounded to  \
     * T, mt, with the rounding taken back out of the per-channel constants (as the layer-norm kernels    \
     * below), Σ dy·(x - mt) adding products rounded to T in float64.  [256, 512] alone, one thread, CPU   \
     * time, min of 400: forward 57.8 -> 44 µs, backward 72.1 -> 52 µs (docs/benchmarks.md). */            \
    AG_VEC_CLONES_512 static void bn_cols_sums_##SUF(const T *restrict x, int64_t n0, int64_t n1, int64_t C,   \
                                                 int64_t c0, int64_t c1, double *restrict m_,                  \
                                                 double *restrict q_) {                                        \
        for (int64_t c = c0; c < c1; c++) m_[c] = q_[c] = 0;                                                   \
        int64_t n = n0;                                                                                        \
        for (; n + 4 <= n1; n += 4) /* four rows a sweep, each sum in registers across them (the same adds) */ \
            for (int64_t c = c0; c < c1; c++) {                                                                \
                const double s = (double)x[c];                                                                 \
                double m = m_[c], q = q_[c];                                                                   \
                for (int64_t r = n; r < n + 4; r++) {                                                          \
                    const double d = (double)x[r * C + c] - s;                                                 \
                    m += d;                                                                                    \
                    q += d * d;                                                                                \
                }                                                                                              \
                m_[c] = m, q_[c] = q;                                                                          \
            }                                                                                                  \
        for (; n < n1; n++)                                                                                    \
            for (int64_t c = c0; c < c1; c++) {                                                                \
                const double d = (double)x[n * C + c] - (double)x[c];                                          \
                m_[c] += d;                                                                                    \
                q_[c] += d * d;                                                                                \
            }                                                                                                  \
    }                                                                                                          \
    /* μ = s + Σd/M and Σ(x - μ)² = Σd² - (Σd)²/M from the shifted sums in mean and sq (M > 0), over [c0, c1) */     \
    static void bn_cols_stats_##SUF(const T *restrict x, int64_t c0, int64_t c1, double M, double *restrict mean,    \
                                    double *restrict sq) {                                                     \
        for (int64_t c = c0; c < c1 && M > 0; c++) {                                                           \
            const double s = mean[c], q = sq[c] - s * s / M;                                                   \
            mean[c] = (double)x[c] + s / M;                                                                    \
            sq[c] = q < 0 ? 0 : q; /* rounding only; NaN stays */                                              \
        }                                                                                                      \
    }                                                                                                          \
    /* y = x·scale + shift over rows [n0, n1), columns [c0, c1), in float64 (float32 arithmetic here would     \
     * lose 2 ulps of x̂) */                                                                                   \
    AG_VEC_CLONES static void bn_cols_apply_##SUF(T *restrict y, const T *restrict x, int64_t n0, int64_t n1,  \
                                                  int64_t C,                                                   \
                                                  int64_t c0, int64_t c1, const double *restrict scale,        \
                                                  const double *restrict shift) {                              \
        for (int64_t n = n0; n < n1; n++)                                                                      \
            for (int64_t c = c0; c < c1; c++) y[n * C + c] = (T)((double)x[n * C + c] * scale[c] + shift[c]);  \
    }                                                                                                          \
    /* y = relu(x·scale + shift)·keep over rows [n0, n1), columns [c0, c1), keep dropout's mask of key k       \
     * (0 or s), made a                                                                                        \
     * run of at most BN_DROP_BLOCK columns of a row at a time into a buffer that stays in L1 (from the even   \
     * element at or before the run, as ag__rand_keep_part takes it): batch_norm_relu_dropout over [N, C], the \
     * bits of batch_norm then nn/dropout.c's relu_dropout pass, with no y of batch norm and no mask stored. */\
    AG_VEC_CLONES static void bn_cols_apply_drop_##SUF(T *restrict y, const T *restrict x, int64_t N, int64_t n0, \
                                                       int64_t n1, int64_t C,                                  \
                                                       int64_t c0, int64_t c1, const double *restrict scale,   \
                                                       const double *restrict shift, ag_keep_key k, double s) { \
        T keep[BN_DROP_BLOCK + 2];                                                                             \
        const int64_t total = N * C;                                                                           \
        for (int64_t n = n0; n < n1; n++)                                                                      \
            for (int64_t r0 = c0; r0 < c1; r0 += BN_DROP_BLOCK) {                                              \
                const int64_t r1 = r0 + BN_DROP_BLOCK < c1 ? r0 + BN_DROP_BLOCK : c1, i0 = n * C + r0;         \
                const int64_t a0 = i0 - i0 % 2, a1 = n * C + r1 + 1 < total ? (n * C + r1 + 1) / 2 * 2 : total; \
                ag__rand_keep_part(keep, sizeof(T) == 8 ? AG_F64 : AG_F32, total, a0, a1, k, s);               \
                const T *restrict kp = keep + (i0 - a0);                                                       \
                T *restrict yr = y + n * C;                                                                    \
                const T *restrict xr = x + n * C;                                                              \
                for (int64_t c = r0; c < r1; c++) {                                                            \
                    const T v = (T)((double)xr[c] * scale[c] + shift[c]);                                      \
                    yr[c] = (v <= 0 ? 0 : v) * kp[c - r0];                                                     \
                }                                                                                              \
            }                                                                                                  \
    }                                                                                                          \
    /* y ·= keep over [i0, i1) (i0 even), dropout's mask of key k over n values made a block at a time in L1  \
     * (batch_norm_relu_dropout over planes: a pass of its own after batch_norm_relu's) */                    \
    AG_VEC_CLONES static void bn_drop_run_##SUF(T *restrict y, int64_t n, int64_t i0, int64_t i1, ag_keep_key k, \
                                                double s) {                                                    \
        T keep[BN_DROP_BLOCK];                                                                                 \
        for (int64_t b0 = i0; b0 < i1; b0 += BN_DROP_BLOCK) {                                                  \
            const int64_t b1 = b0 + BN_DROP_BLOCK < i1 ? b0 + BN_DROP_BLOCK : i1;                              \
            ag__rand_keep_part(keep, sizeof(T) == 8 ? AG_F64 : AG_F32, n, b0, b1, k, s);                       \
            for (int64_t i = b0; i < b1; i++) y[i] *= keep[i - b0];                                            \
        }                                                                                                      \
    }                                                                                                          \
    /* bn_drop_run over all n values, split over threads (on even elements) when large */                      \
    static void bn_drop_##SUF(void *yv, int64_t n, ag_keep_key k, double s) {                                  \
        const int nt = ag__threads_for(n);                                                                     \
        if (nt <= 1) {                                                                                         \
            bn_drop_run_##SUF(yv, n, 0, n, k, s);                                                              \
            return;                                                                                            \
        }                                                                                                      \
        _Pragma("omp parallel num_threads(nt)") {                                                              \
            const int n_ = omp_get_num_threads(), t_ = omp_get_thread_num();                                   \
            const int64_t i0 = 2 * ag__share_start(n / 2, t_, n_);                                             \
            bn_drop_run_##SUF(yv, n, i0, t_ == n_ - 1 ? n : 2 * ag__share_start(n / 2, t_ + 1, n_), k, s);     \
        }                                                                                                      \
    }                                                                                                          \
    /* y = relu(y) in place over rows [n0, n1), columns [c0, c1) (batch_norm_relu over [N, C], after the apply) */ \
    AG_VEC_CLONES static void bn_cols_relu_##SUF(void *yv, int64_t n0, int64_t n1, int64_t C, int64_t c0,      \
                                                 int64_t c1) {                                                 \
        T *restrict y = yv;                                                                                    \
        for (int64_t n = n0; n < n1; n++)                                                                      \
            for (int64_t c = c0; c < c1; c++) y[n * C + c] = y[n * C + c] <= 0 ? 0 : y[n * C + c];             \
    }                                                                                                          \
    /* g = relu's adjoint of a plane with y recomputed from x as the forward made it, v = (T)(x·sc + sh):        \
     * v <= 0 ? 0 : dy, which is y <= 0 ? 0 : dy bit for bit (batch_norm_relu's adjoint over planes) */         \
    AG_VEC_CLONES static void bn_relu_grad_of_x_##SUF(T *restrict g, const T *restrict x, const T *restrict dy,  \
                                                      int64_t L, double sc, double sh) {                       \
        for (int64_t l = 0; l < L; l++) {                                                                      \
            const T v = (T)((double)x[l] * sc + sh), d = dy[l]; /* dy read whatever v: no masked load */      \
            g[l] = v <= 0 ? 0 : d;                                                                             \
        }                                                                                                      \
    }                                                                                                          \
    /* g = relu's adjoint y <= 0 ? 0 : dy over [i0, i1); dy read whatever y (mask22: no masked load, as in      \
     * bn_relu_grad_of_x) */                                                                                   \
    AG_VEC_CLONES static void bn_relu_grad_run_##SUF(T *restrict g, const T *restrict y, const T *restrict dy, \
                                                     int64_t i0, int64_t i1) {                                 \
        for (int64_t i = i0; i < i1; i++) {                                                                    \
            const T d = dy[i];                                                                                 \
            g[i] = y[i] <= 0 ? 0 : d;                                                                          \
        }                                                                                                      \
    }                                                                                                          \
    /* g = y <= 0 ? 0 : dy·s over [i0, i1): relu's adjoint (s = 1: dy·1 is dy's bits) and, s = 1/(1 - p),    \
     * dropout's after it (batch_norm_relu_dropout: y > 0 where relu kept x and the mask kept y, whose value  \
     * there is s) */                                                                                          \
    AG_VEC_CLONES static void bn_drop_grad_run_##SUF(T *restrict g, const T *restrict y, const T *restrict dy, \
                                                     T s, int64_t i0, int64_t i1) {                            \
        for (int64_t i = i0; i < i1; i++) {                                                                    \
            const T d = dy[i] * s; /* whatever y: the AVX2 clone then loads dy whole, no vmaskmovps (mask22) */ \
            g[i] = y[i] <= 0 ? 0 : d;                                                                          \
        }                                                                                                      \
    }                                                                                                          \
    /* g = bn_drop_grad_run's over n values, split over threads when large (batch_norm_relu's adjoint over    \
     * [N, C], batch_norm_relu_dropout's) */                                                                   \
    static void bn_relu_grad_##SUF(void *gv, const void *yv, const void *dyv, int64_t n, double s) {           \
        T *g = gv;                                                                                             \
        const T *y = yv, *dy = dyv;                                                                            \
        const int nt = ag__threads_for(n);                                                                     \
        if (nt <= 1) {                                                                                         \
            bn_drop_grad_run_##SUF(g, y, dy, (T)s, 0, n);                                                      \
            return;                                                                                            \
        }                                                                                                      \
        _Pragma("omp parallel num_threads(nt)") {                                                              \
            const int n_ = omp_get_num_threads(), t_ = omp_get_thread_num();                                   \
            bn_drop_grad_run_##SUF(g, y, dy, (T)s, ag__share_start(n, t_, n_), ag__share_start(n, t_ + 1, n_)); \
        }                                                                                                      \
    }                                                                                                          \
    /* sdy = Σ dy, sdyx = Σ dy·(x - mt) over rows [n0, n1) from 0, in row order */                             \
    AG_VEC_CLONES_512 static void bn_cols_grad_sums_##SUF(const T *restrict dy, const T *restrict x, int64_t n0,   \
                                                      int64_t n1, int64_t C, int64_t c0, int64_t c1,           \
                                                      const T *restrict mt, double *restrict sdy,              \
                                                      double *restrict sdyx) {                                 \
        for (int64_t c = c0; c < c1; c++) sdy[c] = sdyx[c] = 0;                                                \
        int64_t n = n0;                                                                                        \
        for (; n + 4 <= n1; n += 4) /* as bn_cols_sums: four rows a sweep, the same adds */                    \
            for (int64_t c = c0; c < c1; c++) {                                                                \
                double a = sdy[c], b = sdyx[c];                                                                \
                for (int64_t r = n; r < n + 4; r++) {                                                          \
                    const T g = dy[r * C + c];                                                                 \
                    a += (double)g;                                                                            \
                    b += (double)(g * (x[r * C + c] - mt[c]));                                                 \
                }                                                                                              \
                sdy[c] = a, sdyx[c] = b;                                                                       \
            }                                                                                                  \
        for (; n < n1; n++)                                                                                    \
            for (int64_t c = c0; c < c1; c++) {                                                                \
                const T g = dy[n * C + c];                                                                     \
                sdy[c] += (double)g;                                                                           \
                sdyx[c] += (double)(g * (x[n * C + c] - mt[c]));                                               \
            }                                                                                                  \
    }                                                                                                          \
    /* dx = k·dy - kb·(x - mt) + g0 over rows [n0, n1), columns [c0, c1) */                                    \
    AG_VEC_CLONES static void bn_cols_grad_x_##SUF(T *restrict dx, const T *restrict dy, const T *restrict x,  \
                                                   int64_t n0, int64_t n1, int64_t C, int64_t c0, int64_t c1,  \
                                                   const T *restrict mt, const T *restrict k,                  \
                                                   const T *restrict kb, const T *restrict g0) {               \
        for (int64_t n = n0; n < n1; n++)                                                                      \
            for (int64_t c = c0; c < c1; c++)                                                                  \
                dx[n * C + c] = k[c] * dy[n * C + c] - kb[c] * (x[n * C + c] - mt[c]) + g0[c];                 \
    }                                                                                                          \
    /* The adjoint's sums with relu's and dropout's adjoint folded in (batch_norm_relu(_dropout) over [N, C]):  \
     * g = y <= 0 ? 0 : dy·s (bn_drop_grad_run's, bit for bit) over rows [0, R) (R <= 4) and columns [0, W)     \
     * (W <= BN_FOLD_COLS) of y, dy, x (rows of C) into a block in L1, then sdy += Σ g, sdyx += Σ g·(x - mt)    \
     * from it, each column's terms in row order (bn_cols_grad_sums' adds): the sums read g unmasked, as they   \
     * read gz (a masked float64 sum was miscompiled by gcc 12 for AVX2: bn_backward) */                       \
    AG_VEC_CLONES_512 static void bn_cols_fold_sums_##SUF(const T *restrict y, const T *restrict dy,             \
                                                          const T *restrict x, int64_t C, int64_t R, int64_t W, \
                                                          T s, const T *restrict mt, double *restrict sdy,      \
                                                          double *restrict sdyx) {                              \
        _Alignas(64) T g[4 * BN_FOLD_COLS];                                                                    \
        for (int64_t r = 0; r < R; r++)                                                                        \
            for (int64_t c = 0; c < W; c++) {                                                                  \
                const T d = dy[r * C + c] * s; /* whatever y: no vmaskmovps in the AVX2 clone (mask22) */     \
                g[r * BN_FOLD_COLS + c] = y[r * C + c] <= 0 ? 0 : d;                                           \
            }                                                                                                  \
        if (R == 4) {                                                                                          \
            for (int64_t c = 0; c < W; c++) {                                                                  \
                double a = sdy[c], b = sdyx[c];                                                                \
                for (int64_t r = 0; r < 4; r++) {                                                              \
                    const T v = g[r * BN_FOLD_COLS + c];                                                       \
                    a += (double)v;                                                                            \
                    b += (double)(v * (x[r * C + c] - mt[c]));                                                 \
                }                                                                                              \
                sdy[c] = a, sdyx[c] = b;                                                                       \
            }                                                                                                  \
            return;                                                                                            \
        }                                                                                                      \
        for (int64_t r = 0; r < R; r++)                                                                        \
            for (int64_t c = 0; c < W; c++) {                                                                  \
                const T v = g[r * BN_FOLD_COLS + c];                                                           \
                sdy[c] += (double)v;                                                                           \
                sdyx[c] += (double)(v * (x[r * C + c] - mt[c]));                                               \
            }                                                                                                  \
    }                                                                                                          \
    /* dx = k·g - kb·(x - mt) + g0 over rows [n0, n1), g = y <= 0 ? 0 : dy·s made in place (relu's and         \
     * dropout's adjoint folded into batch norm's over [N, C]: bn_cols_grad_x of bn_drop_grad_run's g) */        \
    AG_VEC_CLONES static void bn_cols_fold_x_##SUF(T *restrict dx, const T *restrict y, const T *restrict dy,  \
                                                   const T *restrict x, int64_t n0, int64_t n1, int64_t C, T s, \
                                                   const T *restrict mt, const T *restrict k,                  \
                                                   const T *restrict kb, const T *restrict g0) {               \
        for (int64_t n = n0; n < n1; n++)                                                                      \
            for (int64_t c = 0; c < C; c++) {                                                                  \
                const T d = dy[n * C + c] * s; /* whatever y: loaded whole, no vmaskmovps (mask22) */         \
                const T g = y[n * C + c] <= 0 ? 0 : d;                                                         \
                dx[n * C + c] = k[c] * g - kb[c] * (x[n * C + c] - mt[c]) + g0[c];                             \
            }                                                                                                  \
    }                                                                                                          \
    /* bn_cols_grad_sums of chunk [n0, n1) with g = y <= 0 ? 0 : dy·s for dy (bn_cols_fold_sums by blocks of   \
     * four rows and BN_FOLD_COLS columns; each column's sum in row order, the bits of bn_cols_grad_sums of gz) */ \
    static void bn_cols_fold_chunk_##SUF(const T *y, const T *dy, const T *x, int64_t n0, int64_t n1, int64_t C, \
                                         T s, const T *mt, double *sdy, double *sdyx) {                        \
        for (int64_t c = 0; c < C; c++) sdy[c] = sdyx[c] = 0;                                                  \
        for (int64_t n = n0; n < n1; n += 4) {                                                                 \
            const int64_t R = n1 - n < 4 ? n1 - n : 4;                                                         \
            for (int64_t c = 0; c < C; c += BN_FOLD_COLS) {                                                    \
                const int64_t o = n * C + c, W = C - c < BN_FOLD_COLS ? C - c : BN_FOLD_COLS;                  \
                bn_cols_fold_sums_##SUF(y + o, dy + o, x + o, C, R, W, s, mt + c, sdy + c, sdyx + c);          \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    /* r = 1/√(σ² + ε), scale = r·w, shift = b - μ·scale over [c0, c1) (scale and shift hold w and b, or       \
     * 1 and 0, on entry) */                                                                                   \
    static void bn_cols_consts_##SUF(int64_t c0, int64_t c1, double M, double eps, const double *restrict mean, \
                                     const double *restrict sq, double *restrict rstd, double *restrict scale, \
                                     double *restrict shift) {                                                 \
        for (int64_t c = c0; c < c1; c++) {                                                                    \
            rstd[c] = 1 / sqrt((M > 0 ? sq[c] / M : 0) + eps);                                                 \
            scale[c] *= rstd[c];                                                                               \
            shift[c] -= mean[c] * scale[c];                                                                    \
        }                                                                                                      \
    }                                                                                                          \
    /* y over rows [n0, n1), columns [c0, c1): x·scale + shift, relu of that (relu), or relu of that times     \
     * dropout's mask of key *drop (0 or ds; drop not NULL, batch_norm_relu_dropout) */                        \
    static void bn_cols_out_##SUF(T *y, const T *x, int64_t N, int64_t n0, int64_t n1, int64_t C, int64_t c0,  \
                                  int64_t c1, const double *scale, const double *shift, const ag_keep_key *drop, \
                                  double ds, bool relu) {                                                      \
        if (drop) {                                                                                            \
            if (!bn_wide_drop_##SUF(y, x, n0, n1, C, c0, c1, scale, shift, *drop, ds))                         \
                bn_cols_apply_drop_##SUF(y, x, N, n0, n1, C, c0, c1, scale, shift, *drop, ds);                 \
            return;                                                                                            \
        }                                                                                                      \
        bn_cols_apply_##SUF(y, x, n0, n1, C, c0, c1, scale, shift);                                            \
        if (relu) bn_cols_relu_##SUF(y, n0, n1, C, c0, c1);                                                    \
    }                                                                                                          \
    /* Thread t of nt in the training forward over [N, C] by chunks of K rows (bn_chunk_rows): its chunks'     \
     * shifted sums from 0 in row order into their partials (chunk k: part rows 2k and 2k + 1, of ldp), then,  \
     * after the team's barrier, its share of the columns (whole 64-byte lines) summed over the partials in    \
     * chunk order, μ, σ² and the constants; after a second barrier y over its chunks' rows. */                \
    static void bn_cols_train_rows_##SUF(T *y, const T *x, int64_t N, int64_t C, double eps, double *mean,     \
                                         double *rstd, double *sq, double *scale, double *shift,               \
                                         const ag_keep_key *drop, double ds, bool relu, double *part, int64_t K, \
                                         int t, int nt) {                                                      \
        const int64_t chunks = (N + K - 1) / K, ldp = (C + 7) / 8 * 8;                                         \
        const int64_t k0 = ag__share_start(chunks, t, nt), k1 = ag__share_start(chunks, t + 1, nt);            \
        for (int64_t k = k0; k < k1; k++) /* chunk 0 from row 1: row 0's d is 0, as the one-chunk sums */      \
            bn_cols_sums_##SUF(x, k ? k * K : 1, k * K + K < N ? k * K + K : N, C, 0, C, part + 2 * k * ldp,   \
                               part + (2 * k + 1) * ldp);                                                      \
        AG_BARRIER(nt);                                                                                                \
        const int64_t lines = ldp / 8, j0 = ag__share_start(lines, t, nt) * 8,                                 \
                      j1 = ag__share_start(lines, t + 1, nt) * 8 < C ? ag__share_start(lines, t + 1, nt) * 8 : C; \
        bn_chunks_combine(mean, sq, part, ldp, chunks, j0, j1); /* Σ_k partial_k in chunk order */             \
        bn_cols_stats_##SUF(x, j0, j1, (double)N, mean, sq);                                                   \
        bn_cols_consts_##SUF(j0, j1, (double)N, eps, mean, sq, rstd, scale, shift);                            \
        AG_BARRIER(nt);                                                                                                \
        bn_cols_out_##SUF(y, x, N, k0 * K, k1 * K < N ? k1 * K : N, C, 0, C, scale, shift, drop, ds, relu);    \
    }                                                                                                          \
    /* Training forward over [N, C]: the statistics, r = 1/√(σ² + ε), scale = r·w, shift = b - μ·scale (scale  \
     * and shift hold w and b, or 1 and 0, on entry) and y (bn_cols_out: relu, or dropout's mask of key *drop) \
     * in one parallel region.  From two chunks of rows (bn_chunk_rows; part: bn_cols_part_len doubles, 64-byte \
     * aligned) by chunks, a thread taking whole chunks, the same chunks and order on any thread count         \
     * (bn_cols_train_rows); else by blocks of channels, all rows (BN_CHANNEL_BLOCKS), each channel's sums in  \
     * row order, so that a thread's columns stay in its cache between the two passes ([256, 512], two threads, \
     * wall clock, min of 400, load 27: forward 36 -> 32 µs, backward 36 -> 32 µs with the region per pass). */ \
    static void bn_cols_train_##SUF(void *yv, const void *xv, int64_t N, int64_t C, double eps, double *mean,  \
                                    double *rstd, double *sq, double *scale, double *shift,                    \
                                    const ag_keep_key *drop, double ds, bool relu, double *part) {             \
        T *y = yv;                                                                                             \
        const T *x = xv;                                                                                       \
        const double M = (double)N;                                                                            \
        const int64_t K = bn_chunk_rows(N);                                                                    \
        if (N > K) {                                                                                           \
            const int nt = bn_rows_threads(N, C, true);                                                        \
            if (nt <= 1) { /* no parallel region: even a one-thread team costs ~1 µs */                        \
                bn_cols_train_rows_##SUF(y, x, N, C, eps, mean, rstd, sq, scale, shift, drop, ds, relu, part,  \
                                         K, 0, 1);                                                             \
                return;                                                                                        \
            }                                                                                                  \
            _Pragma("omp parallel num_threads(nt)")                                                            \
            bn_cols_train_rows_##SUF(y, x, N, C, eps, mean, rstd, sq, scale, shift, drop, ds, relu, part, K,   \
                                     omp_get_thread_num(), omp_get_num_threads());                             \
            return;                                                                                            \
        }                                                                                                      \
        BN_CHANNEL_BLOCKS(N, C, c0, c1, {                                                                      \
            bn_cols_sums_##SUF(x, 1, N, C, c0, c1, mean, sq);                                                  \
            bn_cols_stats_##SUF(x, c0, c1, M, mean, sq);                                                       \
            bn_cols_consts_##SUF(c0, c1, M, eps, mean, sq, rstd, scale, shift);                                \
            bn_cols_out_##SUF(y, x, N, 0, N, C, c0, c1, scale, shift, drop, ds, relu);                         \
        });                                                                                                    \
    }                                                                                                          \
    /* The adjoint's constants over [c0, c1) from sdy = Σ dy and Σ dy·(x - mt) in sdyx: sdyx = Σ dy·(x - μ) =  \
     * Σ dy·(x - mt) - (μ - mt)·Σ dy, k = w·r (k holds w, or 1, on entry), a = Σdy/M, b = r²·sdyx/M (M = 0:    \
     * not training, a = b = 0), and dx's in T: kt = k, kb = k·b, g0 = k·(b·(μ - mt) - a) */                   \
    static void bn_cols_grad_consts_##SUF(int64_t c0, int64_t c1, double M, const double *restrict mean,       \
                                          const double *restrict rstd, const T *restrict mt,                   \
                                          const double *restrict sdy,                                          \
                                          double *restrict sdyx, double *restrict k, double *restrict a,       \
                                          double *restrict b, T *restrict kt, T *restrict kb, T *restrict g0) { \
        for (int64_t c = c0; c < c1; c++) {                                                                    \
            sdyx[c] -= (mean[c] - (double)mt[c]) * sdy[c];                                                     \
            k[c] *= rstd[c];                                                                                   \
            a[c] = M > 0 ? sdy[c] / M : 0;                                                                     \
            b[c] = M > 0 ? rstd[c] * rstd[c] * sdyx[c] / M : 0;                                                \
            kt[c] = (T)k[c], kb[c] = (T)(k[c] * b[c]);                                                         \
            g0[c] = (T)(k[c] * (b[c] * (mean[c] - (double)mt[c]) - a[c]));                                     \
        }                                                                                                      \
    }                                                                                                          \
    /* Thread t of nt in the adjoint over [N, C] by chunks of K rows: its chunks' sums Σ dy, Σ dy·(x - mt) from \
     * 0 in row order into their partials (chunk k: part rows 2k and 2k + 1, of ldp), then, after the team's   \
     * barrier, its share of the columns (whole 64-byte lines) summed over the partials in chunk order and the \
     * constants; after a second barrier dx over its chunks' rows (dx not NULL). */                            \
    static void bn_cols_backward_rows_##SUF(T *dx, const T *dy, const T *x, const T *y, T s, int64_t N,        \
                                            int64_t C, double M, const double *mean, const double *rstd,       \
                                            double *sdy, double *sdyx, double *k, double *a, double *b, T *mt, \
                                            T *kt, T *kb, T *g0, double *part, int64_t K, int t, int nt) {     \
        const int64_t chunks = (N + K - 1) / K, ldp = (C + 7) / 8 * 8;                                         \
        const int64_t k0 = ag__share_start(chunks, t, nt), k1 = ag__share_start(chunks, t + 1, nt);            \
        for (int64_t q = k0; q < k1; q++) {                                                                    \
            const int64_t n1 = q * K + K < N ? q * K + K : N;                                                  \
            if (bn_wide_sums_##SUF(y, dy, x, q * K, n1, C, 0, C, s, mt, part + 2 * q * ldp, part + (2 * q + 1) * ldp)) \
                continue;                                                                                      \
            if (y)                                                                                             \
                bn_cols_fold_chunk_##SUF(y, dy, x, q * K, n1, C, s, mt, part + 2 * q * ldp, part + (2 * q + 1) * ldp); \
            else                                                                                               \
                bn_cols_grad_sums_##SUF(dy, x, q * K, n1, C, 0, C, mt, part + 2 * q * ldp, part + (2 * q + 1) * ldp); \
        }                                                                                                      \
        AG_BARRIER(nt);                                                                                                \
        const int64_t lines = ldp / 8, j0 = ag__share_start(lines, t, nt) * 8,                                 \
                      j1 = ag__share_start(lines, t + 1, nt) * 8 < C ? ag__share_start(lines, t + 1, nt) * 8 : C; \
        bn_chunks_combine(sdy, sdyx, part, ldp, chunks, j0, j1); /* Σ_k partial_k in chunk order */            \
        bn_cols_grad_consts_##SUF(j0, j1, M, mean, rstd, mt, sdy, sdyx, k, a, b, kt, kb, g0);                  \
        if (!dx) return;                                                                                       \
        AG_BARRIER(nt);                                                                                                \
        if (y) bn_cols_fold_x_##SUF(dx, y, dy, x, k0 * K, k1 * K < N ? k1 * K : N, C, s, mt, kt, kb, g0);      \
        else bn_cols_grad_x_##SUF(dx, dy, x, k0 * K, k1 * K < N ? k1 * K : N, C, 0, C, mt, kt, kb, g0);        \
    }                                                                                                          \
    /* The adjoint over [N, C] in one parallel region: sdy = Σ dy, sdyx = Σ dy·(x - μ) (as Σ dy·(x - mt) -     \
     * (μ - mt)·Σ dy), then, when dx is wanted (not NULL), dx = k·(dy - a - (x - μ)·b) with k = w·r (k holds   \
     * w, or 1, on entry), a = Σdy/M, b = r²·sdyx/M (training; else 0) in T about mt: k·dy - k·b·(x - mt) +    \
     * k·(b·(μ - mt) - a).  From two chunks of rows by chunks (bn_cols_backward_rows; part: bn_cols_part_len   \
     * doubles, 64-byte aligned), else by blocks of channels.  scratch: 4·C values of T.  yv not NULL (by    \
     * chunks only): dy stands for relu's and dropout's adjoint g = y <= 0 ? 0 : dy·s, made from y and dy      \
     * inside both passes (bn_cols_fold_chunk, bn_cols_fold_x), the bits of bn_relu_grad's gz read for dy. */  \
    static void bn_cols_backward_##SUF(void *dxv, const void *dyv, const void *xv, const void *yv, double s,   \
                                       int64_t N, int64_t C, bool training, const double *mean,                \
                                       const double *rstd, double *sdy, double *sdyx, double *k, double *a,    \
                                       double *b, void *scratch, double *part) {                               \
        T *dx = dxv, *mt = scratch, *kt = mt + C, *kb = kt + C, *g0 = kb + C;                                  \
        const T *dy = dyv, *x = xv, *y = yv;                                                                   \
        const double M = training ? (double)N : 0;                                                             \
        const int64_t K = bn_chunk_rows(N);                                                                    \
        if (N > K) {                                                                                           \
            for (int64_t c = 0; c < C; c++) mt[c] = (T)mean[c];                                                \
            const int nt = bn_rows_threads(N, C, false);                                                       \
            if (nt <= 1) {                                                                                     \
                bn_cols_backward_rows_##SUF(dx, dy, x, y, (T)s, N, C, M, mean, rstd, sdy, sdyx, k, a, b, mt, kt, kb, \
                                            g0, part, K, 0, 1);                                                \
                return;                                                                                        \
            }                                                                                                  \
            _Pragma("omp parallel num_threads(nt)")                                                            \
            bn_cols_backward_rows_##SUF(dx, dy, x, y, (T)s, N, C, M, mean, rstd, sdy, sdyx, k, a, b, mt, kt, kb, g0, \
                                        part, K, omp_get_thread_num(), omp_get_num_threads());                 \
            return;                                                                                            \
        }                                                                                                      \
        BN_CHANNEL_BLOCKS(N, C, c0, c1, {                                                                      \
            for (int64_t c = c0; c < c1; c++) mt[c] = (T)mean[c];                                              \
            if (!bn_wide_sums_##SUF(NULL, dy, x, 0, N, C, c0, c1, 1, mt, sdy, sdyx))                           \
                bn_cols_grad_sums_##SUF(dy, x, 0, N, C, c0, c1, mt, sdy, sdyx);                                \
            bn_cols_grad_consts_##SUF(c0, c1, M, mean, rstd, mt, sdy, sdyx, k, a, b, kt, kb, g0);              \
            if (dx) bn_cols_grad_x_##SUF(dx, dy, x, 0, N, C, c0, c1, mt, kt, kb, g0);                          \
        });                                                                                                    \
    }                                                                                                          \
    /* Training forward over [N, C, L] (L > 1), a block of channels at a time: mean[c] = Σ x / M, sq[c] =    \
     * Σ (x - mean)² (M = N·L values per channel), r = 1/√(σ² + ε), scale = r·w, shift = b - μ·scale (scale  \
     * and shift hold w and b, or 1 and 0, on entry) and the block's y, so that its planes are still in the   \
     * core's L2 for the second and third passes (at most BN_BLOCK_BYTES of x a block, one channel at least:   \
     * bn1 of cnn_fashion, [128, 32, 28, 28], 401 KB a channel); each pass walks the block image by image, a   \
     * run of the block's planes each (one channel's planes of 3 KB, 100 KB apart, made short runs); each     \
     * channel's sums in the order n = 0, 1, ... whatever the block.  relu: y is relu of that                  \
     * (batch_norm_relu). */                                                                                   \
    static void bn_planes_train_##SUF(void *yv, const void *xv, int64_t N, int64_t C, int64_t L, double eps,   \
                                      double *mean, double *rstd, double *sq, double *scale, double *shift,    \
                                      bool relu) {                                                             \
        T *y = yv;                                                                                             \
        const T *x = xv;                                                                                       \
        double M = (double)(N * L);                                                                            \
        const int64_t per = N * L * (int64_t)sizeof(T), cb = per > 0 && per < BN_BLOCK_BYTES ? BN_BLOCK_BYTES / per : 1; \
        BN_PLANE_BLOCKS(N, C, L, c0, c1, {                                                                     \
            for (int64_t b0 = c0; b0 < c1; b0 += cb) {                                                         \
                const int64_t b1 = b0 + cb < c1 ? b0 + cb : c1;                                                \
                for (int64_t c = b0; c < b1; c++) mean[c] = sq[c] = 0;                                         \
                for (int64_t n = 0; n < N; n++) {                                                              \
                    if (n + BN_PREFETCH_AHEAD < N)                                                             \
                        bn_prefetch_run(x + ((n + BN_PREFETCH_AHEAD) * C + b0) * L, (b1 - b0) * L * (int64_t)sizeof(T), false); \
                    for (int64_t c = b0; c < b1; c++) mean[c] += bn_row_sum_##SUF(x + (n * C + c) * L, L);      \
                }                                                                                              \
                for (int64_t c = b0; c < b1; c++) mean[c] = M > 0 ? mean[c] / M : 0;                           \
                for (int64_t n = 0; n < N; n++)                                                                \
                    for (int64_t c = b0; c < b1; c++) sq[c] += bn_row_sq_##SUF(x + (n * C + c) * L, L, mean[c]); \
                for (int64_t c = b0; c < b1; c++) {                                                            \
                    rstd[c] = 1 / sqrt((M > 0 ? sq[c] / M : 0) + eps);                                         \
                    scale[c] *= rstd[c];                                                                       \
                    shift[c] -= mean[c] * scale[c];                                                            \
                }                                                                                              \
                for (int64_t n = 0; n < N; n++) {                                                              \
                    if (n + BN_PREFETCH_AHEAD < N)                                                             \
                        bn_prefetch_run(y + ((n + BN_PREFETCH_AHEAD) * C + b0) * L, (b1 - b0) * L * (int64_t)sizeof(T), true); \
                    for (int64_t c = b0; c < b1; c++) {                                                        \
                        const int64_t o = (n * C + c) * L;                                                     \
                        if (relu) bn_row_apply_relu_##SUF(y + o, x + o, L, scale[c], shift[c]);                \
                        else bn_row_apply_##SUF(y + o, x + o, L, scale[c], shift[c]);                          \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        });                                                                                                    \
    }                                                                                                          \
    /* y = x·scale[c] + shift[c] */                                                                            \
    /* (relu: y = relu of that, batch_norm_relu) */                                                            \
    static void bn_apply_##SUF(void *yv, const void *xv, int64_t N, int64_t C, int64_t L, const double *scale, \
                               const double *shift, bool relu) {                                               \
        T *y = yv;                                                                                             \
        const T *x = xv;                                                                                       \
        if (L == 1) { /* by rows, a contiguous run a thread (an elementwise map: any split, the same bits) */  \
            int nt = ag__threads_for(N * C);                                                                   \
            if (nt > N) nt = (int)N;                                                                           \
            if (nt <= 1) {                                                                                     \
                bn_cols_out_##SUF(y, x, N, 0, N, C, 0, C, scale, shift, NULL, 1, relu);                        \
                return;                                                                                        \
            }                                                                                                  \
            _Pragma("omp parallel num_threads(nt)") {                                                          \
                const int t_ = omp_get_thread_num(), n_ = omp_get_num_threads();                               \
                bn_cols_out_##SUF(y, x, N, ag__share_start(N, t_, n_), ag__share_start(N, t_ + 1, n_), C, 0, C, scale, \
                                  shift, NULL, 1, relu);                                                       \
            }                                                                                                  \
            return;                                                                                            \
        }                                                                                                      \
        BN_PLANE_BLOCKS(N, C, L, c0, c1, {                                                                     \
            for (int64_t n = 0; n < N; n++)                                                                    \
                for (int64_t c = c0; c < c1; c++) {                                                            \
                    const int64_t o = (n * C + c) * L;                                                         \
                    if (relu) bn_row_apply_relu_##SUF(y + o, x + o, L, scale[c], shift[c]);                    \
                    else bn_row_apply_##SUF(y + o, x + o, L, scale[c], shift[c]);                              \
                }                                                                                              \
        });                                                                                                    \
    }                                                                                                          \
    /* The adjoint over [N, C, L] (L > 1): sdy[c] = Σ dy, sdyx[c] = Σ dy·(x - mean[c]) (each channel's sum   \
     * in the order n = 0, 1, ... of its planes), then, when dx is wanted (not NULL), k = w·r (k holds w, or 1, \
     * on entry), a = Σdy/M, b = r²·sdyx/M (training; else 0) and dx = k·(dy - a - (x - mean)·b).  Both       \
     * passes walk a thread's channels image by image, in memory order (the sums by channel, 3 KB planes     \
     * 100 KB apart, were slower; so was each channel's dx right after its sums, from L2).  batch_norm_relu  \
     * (dy then stands for relu's adjoint gz = y <= 0 ? 0 : dy): with scale and shift (the forward's, planes  \
     * of at most BN_RELU_PLANE_BYTES) each pass makes a plane's gz from x and dy into a buffer in L1          \
     * (bn_relu_grad_of_x) and reads it there, so that neither y nor gz is a stream over memory (5 streams,   \
     * where writing gz to memory took 7); else gz not NULL: the sums pass first writes each plane of gz from \
     * y, and the sums and dx then read gz for dy. */                                                          \
    static void bn_planes_backward_##SUF(void *dxv, const void *dyv, const void *xv, void *gzv, const void *yv, \
                                         const double *scale, const double *shift, int64_t N, int64_t C,       \
                                         int64_t L, bool training, const double *mean, const double *rstd,     \
                                         double *sdy, double *sdyx, double *k, double *a, double *b) {         \
        T *dx = dxv, *gz = gzv;                                                                                \
        const T *x = xv, *y = yv, *dy = gz ? gz : dyv, *dy0 = dyv;                                             \
        const bool of_x = scale && L * (int64_t)sizeof(T) <= BN_RELU_PLANE_BYTES;                              \
        const double M = training ? (double)(N * L) : 0;                                                       \
        BN_PLANE_BLOCKS(N, C, L, c0, c1, {                                                                     \
            _Alignas(64) T pz[BN_RELU_PLANE_BYTES / sizeof(T)];                                                \
            for (int64_t c = c0; c < c1; c++) sdy[c] = sdyx[c] = 0;                                            \
            for (int64_t n = 0; n < N; n++)                                                                    \
                for (int64_t c = c0; c < c1; c++) {                                                            \
                    const int64_t o = (n * C + c) * L;                                                         \
                    if (of_x) {                                                                                \
                        bn_relu_grad_of_x_##SUF(pz, x + o, dy0 + o, L, scale[c], shift[c]);                    \
                        bn_row_grad_sums_##SUF(pz, x + o, L, mean[c], &sdy[c], &sdyx[c]);                      \
                        continue;                                                                              \
                    }                                                                                          \
                    if (gz) bn_relu_grad_run_##SUF(gz + o, y + o, dy0 + o, 0, L);                              \
                    bn_row_grad_sums_##SUF(dy + o, x + o, L, mean[c], &sdy[c], &sdyx[c]);                      \
                }                                                                                              \
            for (int64_t c = c0; c < c1; c++) {                                                                \
                k[c] *= rstd[c];                                                                               \
                a[c] = M > 0 ? sdy[c] / M : 0;                                                                 \
                b[c] = M > 0 ? rstd[c] * rstd[c] * sdyx[c] / M : 0;                                            \
            }                                                                                                  \
        });                                                                                                    \
        if (!dx) return;                                                                                       \
        BN_PLANE_BLOCKS(N, C, L, c0, c1, {                                                                     \
            _Alignas(64) T pz[BN_RELU_PLANE_BYTES / sizeof(T)];                                                \
            for (int64_t n = 0; n < N; n++)                                                                    \
                for (int64_t c = c0; c < c1; c++) {                                                            \
                    const int64_t o = (n * C + c) * L;                                                         \
                    if (of_x) bn_relu_grad_of_x_##SUF(pz, x + o, dy0 + o, L, scale[c], shift[c]);              \
                    bn_row_grad_x_##SUF(dx + o, of_x ? pz : dy + o, x + o, L, mean[c], k[c], a[c], b[c]);      \
                }                                                                                              \
        });                                                                                                    \
    }
NORM_KERNELS(f32, float)
NORM_KERNELS(f64, double)

#ifdef AG_X86_INTRINSICS
/* ln_rows4_stats_f32_512 and ln_rows4_bwd_fused_f32_512 prefetch the four rows' output (y, dx) into L1 while
 * they sum, so that the row kernels' stores that follow find the lines in L1 rather than wait on the last-level
 * cache (layer_norm [512, 1024] forward + backward, one thread, CPU time, 10 alternated pairs under other helpers'
 * memory traffic: 534 -> 371 µs; session 21).  Prefetches change no value.  0 turns it off. */
#define LN_PREFETCH_OUT 1
#include <immintrin.h>
/* The float64 values of lanes 0-7 (LN_LO_PD) and 8-15 (LN_HI_PD) of the sixteen floats v */
#define LN_LO_PD(v) _mm512_cvtps_pd(_mm512_castps512_ps256(v))
#define LN_HI_PD(v) _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))
/* lo[i], hi[i] (i < 4) += AG_SUM16_QUADS's widened blocks of the terms TERM(i, k) (an __m512 of row i's
 * terms k to k + 15) over [0, K - K % 16): blocks of 64 as ((t_k + t_k+16) + (t_k+32 + t_k+48)), a block of
 * 32 as t_k + t_k+16, one of 16 alone.  The rows' tails (K mod 16 terms) are the caller's. */
#define LN_QUADS4_512(K, TERM, lo, hi)                                                                        \
    do {                                                                                                      \
        int64_t b_ = 0;                                                                                       \
        for (; b_ + 64 <= (K); b_ += 64)                                                                      \
            for (int i = 0; i < 4; i++) {                                                                     \
                const __m512 t_ = _mm512_add_ps(_mm512_add_ps(TERM(i, b_), TERM(i, b_ + 16)),                 \
                                                _mm512_add_ps(TERM(i, b_ + 32), TERM(i, b_ + 48)));           \
                lo[i] = _mm512_add_pd(lo[i], LN_LO_PD(t_)), hi[i] = _mm512_add_pd(hi[i], LN_HI_PD(t_));       \
            }                                                                                                 \
        if (b_ + 32 <= (K)) {                                                                                 \
            for (int i = 0; i < 4; i++) {                                                                     \
                const __m512 t_ = _mm512_add_ps(TERM(i, b_), TERM(i, b_ + 16));                               \
                lo[i] = _mm512_add_pd(lo[i], LN_LO_PD(t_)), hi[i] = _mm512_add_pd(hi[i], LN_HI_PD(t_));       \
            }                                                                                                 \
            b_ += 32;                                                                                         \
        }                                                                                                     \
        if (b_ + 16 <= (K))                                                                                   \
            for (int i = 0; i < 4; i++) {                                                                     \
                const __m512 t_ = TERM(i, b_);                                                                \
                lo[i] = _mm512_add_pd(lo[i], LN_LO_PD(t_)), hi[i] = _mm512_add_pd(hi[i], LN_HI_PD(t_));       \
            }                                                                                                 \
    } while (0)

/* ln_row_stats_f32 of the four float32 rows of K at x (row i at x + i·K) into st[0..7], by AVX-512
 * intrinsics, with its bits: Σ x's AG_SUM8 accumulators are one vector of eight doubles a row (lane j adds
 * the terms j mod 8 in k order, the tail in order, the same finish), Σ (x - mt)²'s sixteen AG_SUM16_QUADS
 * accumulators two vectors (the same float32 squares, quads, tails and finish), the four rows' vectors
 * independent chains of additions; no fused multiply-add.  yw (NULL: none): the four rows' output
 * (16·K bytes), prefetched (prefetcht0) (LN_PREFETCH_OUT). */
__attribute__((target("avx512f"))) static void ln_rows4_stats_f32_512(const float *x, int64_t K, double eps, double *st,
                                                                      float *yw) {
    const int64_t K8 = K - K % 8, K16 = K - K % 16;
    const float *r0 = x, *r1 = x + K, *r2 = x + 2 * K, *r3 = x + 3 * K;
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < K8; k += 8) {
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm256_loadu_ps(r0 + k)));
        a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_loadu_ps(r1 + k)));
        a2 = _mm512_add_pd(a2, _mm512_cvtps_pd(_mm256_loadu_ps(r2 + k)));
        a3 = _mm512_add_pd(a3, _mm512_cvtps_pd(_mm256_loadu_ps(r3 + k)));
        if (LN_PREFETCH_OUT && yw) { /* the four rows' y, 128 bytes of their 16·K a step of 8 */
            _mm_prefetch((const char *)(yw + 4 * k), _MM_HINT_T0);
            _mm_prefetch((const char *)(yw + 4 * k + 16), _MM_HINT_T0);
        }
    }
    const __m512d acc[4] = {a0, a1, a2, a3};
    __m512d lo[4], hi[4];
    __m512 mv[4];
    float mt[4];
    double m[4];
    for (int i = 0; i < 4; i++) {
        double tail = 0;
        for (int64_t k = K8; k < K; k++) tail += (double)x[i * K + k];
        const double sum = ag__sum8_finish_512(acc[i], tail);
        m[i] = K ? sum / (double)K : 0;
        mt[i] = (float)m[i], mv[i] = _mm512_set1_ps(mt[i]);
        lo[i] = hi[i] = _mm512_setzero_pd();
    }
#define LN_SQ(i, k)                                                                                           \
    _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + (i) * K + (k)), mv[i]), _mm512_sub_ps(_mm512_loadu_ps(x + (i) * K + (k)), mv[i]))
    LN_QUADS4_512(K, LN_SQ, lo, hi);
#undef LN_SQ
    for (int i = 0; i < 4; i++) {
        const float *r = x + i * K, mi = mt[i];
        double tail = 0;
        for (int64_t k = K16; k < K; k++) tail += (double)((r[k] - mi) * (r[k] - mi));
        const double q = ag__sum16_finish_512(lo[i], hi[i], tail);
        const double d = m[i] - (double)mi, var = K ? fmax(q / (double)K - d * d, 0) : 0;
        st[2 * i] = m[i];
        st[2 * i + 1] = 1 / sqrt(var + eps);
    }
}

/* ln_row_backward_f32's two sums for the four float32 rows at dy, x (row i at i·K; statistics st),
 * by AVX-512 intrinsics with its bits, four rows' chains at once as ln_rows4_stats_f32_512:
 * sums[2i] = Σ g, sums[2i + 1] = Σ g·x̂ of row i (g = dy·w, or dy without w), each AG_SUM16_QUADS's
 * sum of the same float32 terms. */
__attribute__((target("avx512f"))) static void ln_rows4_bwd_sums_f32_512(const float *dy, const float *x, int64_t K,
                                                                         const float *w, const double *st, double *sums) {
    const int64_t K16 = K - K % 16;
    float mt[4], rt[4], ct[4];
    __m512 mv[4], rv[4], cv[4];
    __m512d lo[4], hi[4], lox[4], hix[4];
    for (int i = 0; i < 4; i++) {
        mt[i] = (float)st[2 * i], rt[i] = (float)st[2 * i + 1], ct[i] = (float)((st[2 * i] - (double)mt[i]) * st[2 * i + 1]);
        mv[i] = _mm512_set1_ps(mt[i]), rv[i] = _mm512_set1_ps(rt[i]), cv[i] = _mm512_set1_ps(ct[i]);
        lo[i] = hi[i] = lox[i] = hix[i] = _mm512_setzero_pd();
    }
#define LN_G(i, k)                                                                                            \
    (w ? _mm512_mul_ps(_mm512_loadu_ps(dy + (i) * K + (k)), _mm512_loadu_ps(w + (k))) : _mm512_loadu_ps(dy + (i) * K + (k)))
#define LN_GX(i, k)                                                                                           \
    _mm512_mul_ps(LN_G(i, k), _mm512_sub_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + (i) * K + (k)), mv[i]), rv[i]), cv[i]))
    LN_QUADS4_512(K, LN_G, lo, hi);
    LN_QUADS4_512(K, LN_GX, lox, hix);
#undef LN_G
#undef LN_GX
    for (int i = 0; i < 4; i++) {
        const float *d = dy + i * K, *xr = x + i * K, m_ = mt[i], r_ = rt[i], c_ = ct[i];
        double tg = 0, tgx = 0;
        for (int64_t k = K16; k < K; k++) {
            const float g = w ? d[k] * w[k] : d[k];
            tg += (double)g, tgx += (double)(g * ((xr[k] - m_) * r_ - c_));
        }
        sums[2 * i] = ag__sum16_finish_512(lo[i], hi[i], tg), sums[2 * i + 1] = ag__sum16_finish_512(lox[i], hix[i], tgx);
    }
}

/* ln_rows4_bwd_fused_f32_512's columns k to k + 15 of the four rows: g[i] = dy·w and gx[i] = g·x̂ of row i,
 * and dw += (double)((p0 + p1) + (p2 + p3)), p = dy·x̂, db += (double)((dy0 + dy1) + (dy2 + dy3)) (NULL: not
 * wanted), as ln_rows4_param_grads; dxw (NULL: none): the rows' dx there, prefetched */
__attribute__((target("avx512f"), always_inline)) static inline void
ln_rows4_fused_vec(const float *dy, const float *x, int64_t K, const float *w, int64_t k, const __m512 *mv,
                   const __m512 *rv, const __m512 *cv, __m512 *g, __m512 *gx, double *dw, double *db, float *dxw) {
    if (LN_PREFETCH_OUT && dxw) /* the four rows' dx, 256 bytes of their 16·K a step of 16 */
        for (int j = 0; j < 64; j += 16) _mm_prefetch((const char *)(dxw + 4 * k + j), _MM_HINT_T0);
    const __m512 wv = _mm512_loadu_ps(w + k);
    __m512 d[4], p[4];
    for (int i = 0; i < 4; i++) {
        const __m512 xh = _mm512_sub_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i * K + k), mv[i]), rv[i]), cv[i]);
        d[i] = _mm512_loadu_ps(dy + i * K + k);
        g[i] = _mm512_mul_ps(d[i], wv), gx[i] = _mm512_mul_ps(g[i], xh), p[i] = _mm512_mul_ps(d[i], xh);
    }
    if (dw) {
        const __m512 t = _mm512_add_ps(_mm512_add_ps(p[0], p[1]), _mm512_add_ps(p[2], p[3]));
        _mm512_storeu_pd(dw + k, _mm512_add_pd(_mm512_loadu_pd(dw + k), LN_LO_PD(t)));
        _mm512_storeu_pd(dw + k + 8, _mm512_add_pd(_mm512_loadu_pd(dw + k + 8), LN_HI_PD(t)));
    }
    if (db) {
        const __m512 t = _mm512_add_ps(_mm512_add_ps(d[0], d[1]), _mm512_add_ps(d[2], d[3]));
        _mm512_storeu_pd(db + k, _mm512_add_pd(_mm512_loadu_pd(db + k), LN_LO_PD(t)));
        _mm512_storeu_pd(db + k + 8, _mm512_add_pd(_mm512_loadu_pd(db + k + 8), LN_HI_PD(t)));
    }
}

/* The adjoint's pass over four float32 rows at dy, x with a weight w (statistics st): the sums of
 * ln_rows4_bwd_sums_f32_512 (sums[2i] = Σ g, sums[2i + 1] = Σ g·x̂ of row i, g = dy·w) and
 * ln_rows4_param_grads' dw += (double)((p0 + p1) + (p2 + p3)), p = dy·x̂, db += (double)((dy0 + dy1) +
 * (dy2 + dy3)) (NULL: not wanted) at once, with both kernels' bits: the same float32 terms and
 * AG_SUM16_QUADS's blocks.  One read of the rows and one x̂ for the three uses, where the two kernels
 * read them twice and made x̂ twice (layer_norm [512, 1024], one thread: docs/benchmarks.md, session 19).
 * dxw (NULL: none): the four rows' dx (16·K bytes), prefetched (prefetcht0) (LN_PREFETCH_OUT). */
__attribute__((target("avx512f"))) static void ln_rows4_bwd_fused_f32_512(const float *dy, const float *x, int64_t K,
                                                                          const float *w, const double *st,
                                                                          double *sums, double *dw, double *db,
                                                                          float *dxw) {
    const int64_t K16 = K - K % 16;
    float mt[4], rt[4], ct[4];
    __m512 mv[4], rv[4], cv[4];
    __m512d lo[4], hi[4], lox[4], hix[4];
    for (int i = 0; i < 4; i++) {
        mt[i] = (float)st[2 * i], rt[i] = (float)st[2 * i + 1], ct[i] = (float)((st[2 * i] - (double)mt[i]) * st[2 * i + 1]);
        mv[i] = _mm512_set1_ps(mt[i]), rv[i] = _mm512_set1_ps(rt[i]), cv[i] = _mm512_set1_ps(ct[i]);
        lo[i] = hi[i] = lox[i] = hix[i] = _mm512_setzero_pd();
    }
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        /* the widths AG_SUM16_QUADS takes from k: 64 while they fit, then 32, then 16 */
        const int n = k + 64 <= K ? 4 : k + 32 <= K ? 2 : 1;
        __m512 g[4][4], gx[4][4], tg[4], tgx[4];
        for (int j = 0; j < n; j++) ln_rows4_fused_vec(dy, x, K, w, k + 16 * j, mv, rv, cv, g[j], gx[j], dw, db, dxw);
        for (int i = 0; i < 4; i++) {
            tg[i] = n == 4 ? _mm512_add_ps(_mm512_add_ps(g[0][i], g[1][i]), _mm512_add_ps(g[2][i], g[3][i]))
                  : n == 2 ? _mm512_add_ps(g[0][i], g[1][i]) : g[0][i];
            tgx[i] = n == 4 ? _mm512_add_ps(_mm512_add_ps(gx[0][i], gx[1][i]), _mm512_add_ps(gx[2][i], gx[3][i]))
                   : n == 2 ? _mm512_add_ps(gx[0][i], gx[1][i]) : gx[0][i];
            lo[i] = _mm512_add_pd(lo[i], LN_LO_PD(tg[i])), hi[i] = _mm512_add_pd(hi[i], LN_HI_PD(tg[i]));
            lox[i] = _mm512_add_pd(lox[i], LN_LO_PD(tgx[i])), hix[i] = _mm512_add_pd(hix[i], LN_HI_PD(tgx[i]));
        }
        k += 16 * (n - 1);
    }
    /* dw and db over the columns the vectors left, [K16, K), as ln_rows4_param_grads */
    for (k = K16; k < K; k++) {
        float p[4], d[4];
        for (int i = 0; i < 4; i++) d[i] = dy[i * K + k], p[i] = d[i] * ((x[i * K + k] - mt[i]) * rt[i] - ct[i]);
        if (dw) dw[k] += (double)((p[0] + p[1]) + (p[2] + p[3]));
        if (db) db[k] += (double)((d[0] + d[1]) + (d[2] + d[3]));
    }
    /* the sums' tails and finish, as ln_rows4_bwd_sums_f32_512 with w */
    for (int i = 0; i < 4; i++) {
        const float *d = dy + i * K, *xr = x + i * K, m_ = mt[i], r_ = rt[i], c_ = ct[i];
        double tg = 0, tgx = 0;
        for (k = K16; k < K; k++) {
            const float g = d[k] * w[k];
            tg += (double)g, tgx += (double)(g * ((xr[k] - m_) * r_ - c_));
        }
        sums[2 * i] = ag__sum16_finish_512(lo[i], hi[i], tg), sums[2 * i + 1] = ag__sum16_finish_512(lox[i], hix[i], tgx);
    }
}
#undef LN_QUADS4_512
#undef LN_LO_PD
#undef LN_HI_PD
#endif

/* Whether ln_rows4_bwd_sums_f32_512 made the sums of the four float32 rows (where the CPU runs
 * AVX-512); float64 rows always take ln_row_backward's. */
static bool ln_rows4_bwd_sums_f32(const float *dy, const float *x, int64_t K, const float *w, const double *st,
                                  double *sums) {
#ifdef AG_X86_INTRINSICS
    if (AG_VEC_512()) {
        ln_rows4_bwd_sums_f32_512(dy, x, K, w, st, sums);
        return true;
    }
#endif
    (void)dy, (void)x, (void)K, (void)w, (void)st, (void)sums;
    return false;
}
#define ln_rows4_bwd_sums_f64(dy, x, K, w, st, sums) false

/* Whether ln_rows4_bwd_fused_f32_512 made the two sums of the four float32 rows and added their
 * terms into dw and db (NULL: not wanted): where the CPU runs AVX-512 and there is a weight (without
 * one, Σ g's terms are dy's one by one: the two kernels), dxw their dx to prefetch.  float64 rows
 * always take the two. */
static bool ln_rows4_bwd_fused_f32(const float *dy, const float *x, int64_t K, const float *w, const double *st,
                                   double *sums, double *dw, double *db, float *dxw) {
#ifdef AG_X86_INTRINSICS
    if (w && AG_VEC_512()) {
        ln_rows4_bwd_fused_f32_512(dy, x, K, w, st, sums, dw, db, dxw);
        return true;
    }
#endif
    (void)dy, (void)x, (void)K, (void)w, (void)st, (void)sums, (void)dw, (void)db, (void)dxw;
    return false;
}
#define ln_rows4_bwd_fused_f64(dy, x, K, w, st, sums, dw, db, dxw) false

/* Whether ln_rows4_stats_f32_512 made the statistics of the four float32 rows at x (where the CPU
 * runs AVX-512), yw their y to prefetch; float64 rows always take ln_row_stats. */
static bool ln_rows4_stats_f32(const float *x, int64_t K, double eps, double *st, float *yw) {
#ifdef AG_X86_INTRINSICS
    if (AG_VEC_512()) {
        ln_rows4_stats_f32_512(x, K, eps, st, yw);
        return true;
    }
#endif
    (void)x, (void)K, (void)eps, (void)st, (void)yw;
    return false;
}
#define ln_rows4_stats_f64(x, K, eps, st, yw) false

/* ---- layer-norm row kernels, for float and double ----------------------------------------------------------
 * x is [R, K] rows; w and b (NULL: 1 and 0) are K values of x's dtype.  The elementwise work runs in T and
 * the sums in float64 of terms computed in T: for float32 one conversion per term, not one per operand, and
 * no float64 arithmetic per element.  The conversions bound the kernels, so every sum but the mean's adds
 * its terms four at a time in T before converting (core/sum_pairs.h's AG_SUM16_QUADS: Σ(x - mt)², Σ g and
 * Σ g·x̂ with g = dy·w or dy; session 23; before, two at a time, and Σ dy term by term), and dw and db add
 * a block's four rows in T, ((p0 + p1) + (p2 + p3)) (before: dw in two pairs, db in float64).  For float32
 * each is within (2·2^-24 + (n/64 + 16)·2^-53)·Σ|t| of the sum of its float32 terms t (db within
 * 2·2^-24·Σ|dy| of Σ dy, over four rows a block); the variance within 5·2^-24 of Σ(x - mt)²/K
 * (test_reduce_paths' test_layer_norm_sum_bounds, against long double).  The mean alone keeps AG_SUM8 of
 * the exact terms x: its error is float64's, so that x̂ near 0 (x near m) keeps float32's relative accuracy
 * (test_reduce's 2 ulps over rows of 10^6; a float32 Σ x, even of x - x[0], took 2.2·10^6 ulps there).
 * The conversions halved ([512, 1024] forward + backward on one thread, CPU time: 565 -> 473 µs,
 * session 15) and halved again (session 23: docs/benchmarks.md).  The row's mean m is used rounded to T (mt) with the
 * rounding taken back out, Σ(x - mt)² = Σ(x - m)² + K(m - mt)² and x̂ = (x - mt)·r - (m - mt)·r, so a mean
 * far from 0 costs no accuracy.  For float64, mt = m and this is the float64 arithmetic it was.
 * The row's forward, its adjoint and dw/db of four rows take an x86-64-v4 clone too (AG_VEC_CLONES_512,
 * the same bits): once the sums of four rows run at once (ln_rows4_stats_f32_512 and
 * ln_rows4_bwd_sums_f32_512) their elementwise loops and dw/db's float64 loads and stores are what is
 * left ([512, 1024] forward + backward, one thread, CPU time, on the AMD EPYC: 352-367 -> 321-332 µs;
 * row by row, bound by the sums, the clone gained nothing: session 15). */
#define LN_KERNELS(SUF, T)                                                                                     \
    /* One row of K values: its mean m and r = 1/√(var + eps) into st[0] and st[1] (x̂ = (x - mt)·rt - ct with \
     * mt, rt and ct as ln_row_xhat gives them). */                                                          \
    AG_VEC_CLONES static void ln_row_stats_##SUF(const T *restrict x, int64_t K, double eps, double *st) {      \
        double s, q;                                                                                           \
        AG_SUM8(s, K, k, (double)x[k]);                                                                        \
        const double m = K ? s / (double)K : 0;                                                                \
        const T mt = (T)m;                                                                                     \
        AG_SUM16_QUADS(q, K, k, T, (x[k] - mt) * (x[k] - mt));                                                 \
        const double d = m - (double)mt, var = K ? fmax(q / (double)K - d * d, 0) : 0;                         \
        st[0] = m;                                                                                             \
        st[1] = 1 / sqrt(var + eps);                                                                           \
    }                                                                                                          \
    /* x̂ = (x - mt)·rt - ct from a row's statistics st: mt = (T)m, rt = (T)r, ct = (T)((m - mt)·r) */        \
    static inline void ln_row_xhat_##SUF(const double *st, T *mt, T *rt, T *ct) {                              \
        *mt = (T)st[0], *rt = (T)st[1], *ct = (T)((st[0] - (double)*mt) * st[1]);                              \
    }                                                                                                          \
    /* One row: mean and r = 1/√(var + eps) into st (stats: made here, else already in st), then           \
     * y = x̂·w + b. */                                                                                        \
    AG_VEC_CLONES_512 static void ln_row_forward_##SUF(T *restrict y, const T *restrict x, int64_t K, const T *w,  \
                                                   const T *b, double eps, double *st, bool stats) {           \
        T mt, rt, ct;                                                                                          \
        if (stats) ln_row_stats_##SUF(x, K, eps, st);                                                          \
        ln_row_xhat_##SUF(st, &mt, &rt, &ct);                                                                  \
        if (w && b)                                                                                            \
            for (int64_t k = 0; k < K; k++) y[k] = ((x[k] - mt) * rt - ct) * w[k] + b[k];                      \
        else                                                                                                   \
            for (int64_t k = 0; k < K; k++) y[k] = ((x[k] - mt) * rt - ct) * (w ? w[k] : 1) + (b ? b[k] : 0);   \
    }                                                                                                          \
    /* Rows [lo, hi) of [R, K]: ln_row_forward, the statistics of four rows at a time by ln_rows4_stats     \
     * where it runs (the same bits). */                                                                      \
    static void ln_rows_forward_##SUF(T *y, const T *x, int64_t lo, int64_t hi, int64_t K, const T *w,        \
                                      const T *b, double eps, double *stats) {                                 \
        for (int64_t r = lo; r < hi;) {                                                                        \
            const int rows = hi - r >= 4 && ln_rows4_stats_##SUF(x + r * K, K, eps, stats + 2 * r, y + r * K) ? 4 : 1;    \
            for (int i = 0; i < rows; i++, r++)                                                                \
                ln_row_forward_##SUF(y + r * K, x + r * K, K, w, b, eps, stats + 2 * r, rows == 1);            \
        }                                                                                                      \
    }                                                                                                          \
    /* Per row of [R, K]: ln_rows_forward, the rows split over threads when there are enough of them. */       \
    static void ln_forward_##SUF(void *yv, const void *xv, int64_t R, int64_t K, const void *wv,              \
                                 const void *bv, double eps, double *stats) {                                  \
        T *y = yv;                                                                                             \
        const T *x = xv, *w = wv, *b = bv;                                                                     \
        int nt = R > 1 ? ag__threads_for(R * K) : 1;                                                           \
        if (nt > R) nt = (int)R;                                                                               \
        if (nt <= 1) {                                                                                         \
            ln_rows_forward_##SUF(y, x, 0, R, K, w, b, eps, stats);                                            \
            return;                                                                                            \
        }                                                                                                      \
        _Pragma("omp parallel num_threads(nt)") {                                                              \
            int n_ = omp_get_num_threads(), t_ = omp_get_thread_num();                                         \
            ln_rows_forward_##SUF(y, x, ag__share_start(R, t_, n_), ag__share_start(R, t_ + 1, n_), K, w, b, eps, stats); \
        }                                                                                                      \
    }                                                                                                          \
    /* One row, with g = dy·w and x̂ as in the forward: dx = r·(g - Σg/K - x̂·Σ(g·x̂)/K) (dx NULL: not wanted);  \
     * dw += dy·x̂, db += dy (NULL: not wanted); sums: Σg and Σ(g·x̂) already made (NULL: made here). */          \
    AG_VEC_CLONES_512 static void ln_row_backward_##SUF(T *restrict dx, const T *restrict dy, const T *restrict x, int64_t K,     \
                                                    const T *w, const double *st, double *restrict dw,         \
                                                    double *restrict db, const double *sums) {                 \
        T mt, rt, ct;                                                                                          \
        ln_row_xhat_##SUF(st, &mt, &rt, &ct);                                                                  \
        if (dw)                                                                                                \
            for (int64_t k = 0; k < K; k++) dw[k] += (double)(dy[k] * ((x[k] - mt) * rt - ct));                \
        if (db)                                                                                                \
            for (int64_t k = 0; k < K; k++) db[k] += (double)dy[k];                                            \
        if (!dx) return;                                                                                       \
        double sg, sgx;                                                                                        \
        if (sums) /* made by ln_rows4_bwd_sums, the same sums */                                               \
            sg = sums[0], sgx = sums[1];                                                                       \
        else if (w) {                                                                                          \
            AG_SUM16_QUADS(sg, K, k, T, dy[k] * w[k]);                                                         \
            AG_SUM16_QUADS(sgx, K, k, T, dy[k] * w[k] * ((x[k] - mt) * rt - ct));                              \
        } else {                                                                                               \
            AG_SUM16_QUADS(sg, K, k, T, dy[k]);                                                                \
            AG_SUM16_QUADS(sgx, K, k, T, dy[k] * ((x[k] - mt) * rt - ct));                                     \
        }                                                                                                      \
        const T mg = (T)(sg / (double)K), mgx = (T)(sgx / (double)K);                                          \
        if (w)                                                                                                 \
            for (int64_t k = 0; k < K; k++) dx[k] = rt * (dy[k] * w[k] - mg - ((x[k] - mt) * rt - ct) * mgx);  \
        else                                                                                                   \
            for (int64_t k = 0; k < K; k++) dx[k] = rt * (dy[k] - mg - ((x[k] - mt) * rt - ct) * mgx);         \
    }                                                                                                          \
    /* dw += Σ_i dy_i·x̂_i, db += Σ_i dy_i over the four rows at dy, x (statistics st) (NULL: not wanted),  \
     * the four float64 terms added pairwise before dw and db: a quarter of their loads and stores, which     \
     * bound the per-row loops (layer_norm [512, 1024] forward + backward, one thread: see benchmarks.md). */ \
    AG_VEC_CLONES_512 static void ln_rows4_param_grads_##SUF(const T *restrict dy, const T *restrict x, int64_t K,  \
                                                         const double *st, double *restrict dw,                \
                                                         double *restrict db) {                                \
        const T *d0 = dy, *d1 = dy + K, *d2 = dy + 2 * K, *d3 = dy + 3 * K;                                    \
        const T *x0 = x, *x1 = x + K, *x2 = x + 2 * K, *x3 = x + 3 * K;                                        \
        T mt[4], rt[4], ct[4];                                                                                 \
        for (int i = 0; i < 4; i++)                                                                            \
            mt[i] = (T)st[2 * i], rt[i] = (T)st[2 * i + 1], ct[i] = (T)((st[2 * i] - (double)mt[i]) * st[2 * i + 1]); \
        if (dw)                                                                                                \
            for (int64_t k = 0; k < K; k++)                                                                    \
                dw[k] += (double)((d0[k] * ((x0[k] - mt[0]) * rt[0] - ct[0]) +                                  \
                                   d1[k] * ((x1[k] - mt[1]) * rt[1] - ct[1])) +                                 \
                                  (d2[k] * ((x2[k] - mt[2]) * rt[2] - ct[2]) +                                  \
                                   d3[k] * ((x3[k] - mt[3]) * rt[3] - ct[3])));                                 \
        if (db)                                                                                                \
            for (int64_t k = 0; k < K; k++) db[k] += (double)((d0[k] + d1[k]) + (d2[k] + d3[k]));               \
    }                                                                                                          \
    /* Rows [lo, hi) of [R, K]: dx by ln_row_backward, dw and db by ln_rows4_param_grads four rows at a time, \
     * or with dx and a weight where it runs, the four rows' sums, dw and db in one pass (ln_rows4_bwd_fused, \
     * the same bits). */                                                                                    \
    static void ln_rows_backward_##SUF(T *dx, const T *dy, const T *x, int64_t lo, int64_t hi, int64_t K,      \
                                       const T *w, const double *stats, double *dw, double *db) {             \
        for (int64_t r = lo; r < hi;) {                                                                        \
            double sums[8];                                                                                    \
            const bool four = hi - r >= 4 && (dw || db || dx);                                                 \
            const bool fused = four && dx && (dw || db) &&                                                     \
                               ln_rows4_bwd_fused_##SUF(dy + r * K, x + r * K, K, w, stats + 2 * r, sums, dw, db, dx + r * K); \
            const bool made = fused || (four && dx && ln_rows4_bwd_sums_##SUF(dy + r * K, x + r * K, K, w, stats + 2 * r, sums)); \
            const int rows = four && (dw || db || made) ? 4 : 1;                                               \
            if (rows == 4 && (dw || db) && !fused) ln_rows4_param_grads_##SUF(dy + r * K, x + r * K, K, stats + 2 * r, dw, db); \
            for (int i = 0; i < rows; i++, r++)                                                                \
                ln_row_backward_##SUF(dx ? dx + r * K : NULL, dy + r * K, x + r * K, K, w, stats + 2 * r,       \
                                      rows == 4 ? NULL : dw, rows == 4 ? NULL : db, made ? sums + 2 * i : NULL); \
        }                                                                                                      \
    }                                                                                                          \
    /* Per row of [R, K]: ln_rows_backward.  Rows split over threads when there are enough of them, each     \
     * thread summing dw and db over its rows into a zeroed float64 partial, which are then added into dw     \
     * and db in thread order (the same result for the same thread count). */                                 \
    static void ln_backward_##SUF(void *dxv, const void *dyv, const void *xv, int64_t R, int64_t K,           \
                                  const void *wv, const double *stats, double *dw, double *db) {               \
        T *dx = dxv;                                                                                           \
        const T *dy = dyv, *x = xv, *w = wv;                                                                   \
        int nt = R > 1 ? ag__threads_for(R * K) : 1;                                                           \
        if (nt > R) nt = (int)R;                                                                               \
        double *part = NULL;                                                                                   \
        if (nt > 1 && (dw || db) && !(part = ag__calloc(sizeof(double) * 2 * (size_t)K * (size_t)nt))) nt = 1; \
        if (nt <= 1) {                                                                                         \
            ln_rows_backward_##SUF(dx, dy, x, 0, R, K, w, stats, dw, db);                                      \
            return;                                                                                            \
        }                                                                                                      \
        int used = nt;                                                                                         \
        _Pragma("omp parallel num_threads(nt)") {                                                              \
            int n_ = omp_get_num_threads(), t_ = omp_get_thread_num();                                         \
            if (t_ == 0) used = n_;                                                                            \
            double *pw = part && dw ? part + 2 * K * t_ : NULL, *pb = part && db ? part + 2 * K * t_ + K : NULL; \
            ln_rows_backward_##SUF(dx, dy, x, ag__share_start(R, t_, n_), ag__share_start(R, t_ + 1, n_), K, w, stats, \
                                   pw, pb);                                                                    \
        }                                                                                                      \
        for (int t = 0; part && t < used; t++)                                                                 \
            for (int64_t k = 0; k < K; k++) {                                                                  \
                if (dw) dw[k] += part[2 * K * t + k];                                                          \
                if (db) db[k] += part[2 * K * t + K + k];                                                      \
            }                                                                                                  \
        ag__free(part);                                                                                        \
    }
LN_KERNELS(f32, float)
LN_KERNELS(f64, double)

/* ---- group-norm kernels, for float and double ----------------------------------------------------------
 * x is [N, C, S] (S = product of the dims after 1), seen as N·G rows of K = Cg·S values (Cg = C/G channels of
 * S values each); w and b (NULL: 1 and 0) are the C per-channel values in x's dtype.  A row's statistics are
 * the layer-norm row's (ln_row_stats), and each channel's plane of S values is then a loop with the
 * channel's weight and bias as scalars: y and dx are the layer-norm kernels' expressions (the same bits as
 * the rows over weights expanded to every element, which this replaces).  The adjoint takes each plane's
 * Σ dy and Σ dy·x̂ in float64 (sdy, sdyx, [N, C]): dw_c = Σ_n sdyx, db_c = Σ_n sdy in n order after the
 * rows, and the row's Σ g = Σ_c w_c·sdy_c, Σ g·x̂ = Σ_c w_c·sdyx_c for dx; the rows split over threads
 * whole, so the result does not depend on the thread count. */
#define GN_KERNELS(SUF, T)                                                                                     \
    /* y = x̂·wc + bc over one plane */                                                                        \
    AG_VEC_CLONES static void gn_plane_apply_##SUF(T *restrict y, const T *restrict x, int64_t S, T mt, T rt,  \
                                                   T ct, T wc, T bc) {                                         \
        for (int64_t s = 0; s < S; s++) y[s] = ((x[s] - mt) * rt - ct) * wc + bc;                              \
    }                                                                                                          \
    /* *sdy = Σ dy, *sdyx = Σ dy·x̂ over one plane */                                                          \
    AG_VEC_CLONES static void gn_plane_sums_##SUF(const T *restrict dy, const T *restrict x, int64_t S, T mt,  \
                                                  T rt, T ct, double *sdy, double *sdyx) {                     \
        double a, b;                                                                                           \
        AG_SUM8(a, S, s, (double)dy[s]);                                                                       \
        AG_SUM8(b, S, s, (double)(dy[s] * ((x[s] - mt) * rt - ct)));                                           \
        *sdy = a, *sdyx = b;                                                                                   \
    }                                                                                                          \
    /* dx = r·(dy·wc - mean(g) - x̂·mean(g·x̂)) over one plane */                                               \
    AG_VEC_CLONES static void gn_plane_grad_x_##SUF(T *restrict dx, const T *restrict dy, const T *restrict x, \
                                                    int64_t S, T mt, T rt, T ct, T wc, T mg, T mgx) {          \
        for (int64_t s = 0; s < S; s++) dx[s] = rt * (dy[s] * wc - mg - ((x[s] - mt) * rt - ct) * mgx);       \
    }                                                                                                          \
    /* Rows [lo, hi) of the forward: statistics into stats (two a row), y */                                  \
    static void gn_rows_forward_##SUF(T *y, const T *x, int64_t lo, int64_t hi, int64_t G, int64_t Cg,       \
                                      int64_t S, const T *w, const T *b, double eps, double *stats) {          \
        for (int64_t r = lo; r < hi; r++) {                                                                    \
            const int64_t K = Cg * S, c0 = r % G * Cg;                                                         \
            T mt, rt, ct;                                                                                      \
            ln_row_stats_##SUF(x + r * K, K, eps, stats + 2 * r);                                              \
            ln_row_xhat_##SUF(stats + 2 * r, &mt, &rt, &ct);                                                   \
            for (int64_t j = 0; j < Cg; j++)                                                                   \
                gn_plane_apply_##SUF(y + r * K + j * S, x + r * K + j * S, S, mt, rt, ct, w ? w[c0 + j] : 1,   \
                                     b ? b[c0 + j] : 0);                                                       \
        }                                                                                                      \
    }                                                                                                          \
    /* Rows [lo, hi) of the adjoint: each plane's sums into sdy, sdyx ([N·C], row r's at r·Cg), and dx when   \
     * wanted (not NULL) */                                                                                    \
    static void gn_rows_backward_##SUF(T *dx, const T *dy, const T *x, int64_t lo, int64_t hi, int64_t G,    \
                                       int64_t Cg, int64_t S, const T *w, const double *stats, double *sdy,   \
                                       double *sdyx) {                                                         \
        for (int64_t r = lo; r < hi; r++) {                                                                    \
            const int64_t K = Cg * S, c0 = r % G * Cg, o = r * K;                                              \
            T mt, rt, ct;                                                                                      \
            ln_row_xhat_##SUF(stats + 2 * r, &mt, &rt, &ct);                                                   \
            double sg = 0, sgx = 0;                                                                            \
            for (int64_t j = 0; j < Cg; j++) {                                                                 \
                double *a = sdy + r * Cg + j, *bx = sdyx + r * Cg + j;                                         \
                gn_plane_sums_##SUF(dy + o + j * S, x + o + j * S, S, mt, rt, ct, a, bx);                      \
                sg += w ? (double)w[c0 + j] * *a : *a;                                                         \
                sgx += w ? (double)w[c0 + j] * *bx : *bx;                                                      \
            }                                                                                                  \
            if (!dx) continue;                                                                                 \
            const T mg = (T)(sg / (double)K), mgx = (T)(sgx / (double)K);                                      \
            for (int64_t j = 0; j < Cg; j++)                                                                   \
                gn_plane_grad_x_##SUF(dx + o + j * S, dy + o + j * S, x + o + j * S, S, mt, rt, ct,            \
                                      w ? w[c0 + j] : 1, mg, mgx);                                             \
        }                                                                                                      \
    }                                                                                                          \
    /* The N·G rows of the forward, split over threads when there are enough of them */                       \
    static void gn_forward_##SUF(void *yv, const void *xv, int64_t N, int64_t G, int64_t Cg, int64_t S,      \
                                 const void *wv, const void *bv, double eps, double *stats) {                  \
        const int64_t R = N * G;                                                                               \
        int nt = R > 1 ? ag__threads_for(R * Cg * S) : 1;                                                      \
        if (nt > R) nt = (int)R;                                                                               \
        if (nt <= 1) {                                                                                         \
            gn_rows_forward_##SUF(yv, xv, 0, R, G, Cg, S, wv, bv, eps, stats);                                 \
            return;                                                                                            \
        }                                                                                                      \
        _Pragma("omp parallel num_threads(nt)") {                                                              \
            int n_ = omp_get_num_threads(), t_ = omp_get_thread_num();                                         \
            gn_rows_forward_##SUF(yv, xv, ag__share_start(R, t_, n_), ag__share_start(R, t_ + 1, n_), G, Cg, S, \
                                  wv, bv, eps, stats);                                                         \
        }                                                                                                      \
    }                                                                                                          \
    /* The N·G rows of the adjoint likewise (dx NULL: not wanted) */                                          \
    static void gn_backward_##SUF(void *dxv, const void *dyv, const void *xv, int64_t N, int64_t G,           \
                                  int64_t Cg, int64_t S, const void *wv, const double *stats, double *sdy,    \
                                  double *sdyx) {                                                              \
        const int64_t R = N * G;                                                                               \
        int nt = R > 1 ? ag__threads_for(R * Cg * S) : 1;                                                      \
        if (nt > R) nt = (int)R;                                                                               \
        if (nt <= 1) {                                                                                         \
            gn_rows_backward_##SUF(dxv, dyv, xv, 0, R, G, Cg, S, wv, stats, sdy, sdyx);                        \
            return;                                                                                            \
        }                                                                                                      \
        _Pragma("omp parallel num_threads(nt)") {                                                              \
            int n_ = omp_get_num_threads(), t_ = omp_get_thread_num();                                         \
            gn_rows_backward_##SUF(dxv, dyv, xv, ag__share_start(R, t_, n_), ag__share_start(R, t_ + 1, n_), G, \
                                   Cg, S, wv, stats, sdy, sdyx);                                               \
        }                                                                                                      \
    }
GN_KERNELS(f32, float)
GN_KERNELS(f64, double)

#define BY_DTYPE(dt, NAME) ((dt) == AG_F64 ? NAME##_f64 : NAME##_f32)

/* ---- the rules beyond first order, in agrad ops ------------------------------------------------------------
 * Each norm is y = x̂·w + b with x̂ = (v - μ)·r, r = 1/√(σ² + ε), where v is x seen so that the statistics
 * reduce over some of its dims (kept, size 1): x itself over every dim but the channel dim (batch norm) or over
 * the trailing dims (layer norm), x as [N, G, C/G·S] over its last dim (group norm).  The adjoint in
 * differentiable ops (backward_graph) and the tangent rule (jvp) recompute μ and r from x with agrad ops, so
 * that x̂ stays differentiable in x; in evaluation batch norm's μ and r are the running statistics the node
 * saved, constants.  The Jacobian of x̂ in v is symmetric, so one map serves both rules. */
typedef struct norm_view {
    ag_tensor *v;           /* x as the statistics see it */
    int nred, red[AG_MAX_DIMS]; /* the dims of v the statistics reduce */
    ag_tensor *mean, *rstd; /* μ and r, with the reduced dims kept */
    ag_tensor *xhat;        /* (v - μ)·r */
    bool constant;          /* μ and r do not depend on x (batch norm in evaluation) */
} norm_view;

/* Fills nv->mean, rstd (from v when not already set) and xhat; false with the error recorded. */
static bool normalize(norm_view *nv, double eps) {
    if (!nv->mean) {
        nv->mean = ag_mean_dims(nv->v, nv->nred, nv->red, true);
        nv->rstd = ag_rsqrt(ag_add_scalar(ag_var_dims(nv->v, nv->nred, nv->red, 0, true), eps));
    }
    nv->xhat = ag_mul(ag_sub(nv->v, nv->mean), nv->rstd);
    return nv->xhat != NULL;
}

/* J·t with J = ∂x̂/∂v, which is symmetric (so also Jᵀ·t): r·(t - mean(t) - x̂·mean(t·x̂)); r·t when μ, r are
 * constants.  t has v's shape. */
static ag_tensor *xhat_jacobian(const norm_view *nv, ag_tensor *t) {
    if (nv->constant) return ag_mul(t, nv->rstd);
    ag_tensor *mt = ag_mean_dims(t, nv->nred, nv->red, true);
    ag_tensor *mtx = ag_mean_dims(ag_mul(t, nv->xhat), nv->nred, nv->red, true);
    return ag_mul(ag_sub(ag_sub(t, mt), ag_mul(nv->xhat, mtx)), nv->rstd);
}

/* A per-channel vector p [C] seen over x [N, C, *] as [1, C, 1, ...]. */
static ag_tensor *per_channel(ag_tensor *p, const ag_tensor *x) {
    ag_shape s = {x->ndim, {0}};
    for (int d = 0; d < x->ndim; d++) s.dim[d] = d == 1 ? x->shape[1] : 1;
    return ag_reshape(p, s);
}

/* Σ of t [N, C, *] over every dim but the channel dim: [C]. */
static ag_tensor *channel_sum(ag_tensor *t) {
    int dims[AG_MAX_DIMS], n = 0;
    for (int d = 0; d < t->ndim; d++)
        if (d != 1) dims[n++] = d;
    return ag_sum_dims(t, n, dims, false);
}

/* t of v's shape back in x's shape (and the other way). */
static ag_tensor *shaped_as(ag_tensor *t, const ag_tensor *like) { return t ? ag_reshape(t, ag_shape_of(like)) : NULL; }

/* The norm_view of a batch_norm node: x over dims 0, 2, ...; eval: the saved running statistics. */
static norm_view bn_view(ag_tensor *out) {
    ag_tensor *x = out->in[0];
    norm_view nv = {.v = x, .constant = out->attr.i[0] == 0};
    for (int d = 0; d < x->ndim; d++)
        if (d != 1) nv.red[nv.nred++] = d;
    if (nv.constant) { /* saved: [2, C] float64, μ then r */
        nv.mean = per_channel(ag_to_dtype(ag_select(out->saved, 0, 0), x->dtype), x);
        nv.rstd = per_channel(ag_to_dtype(ag_select(out->saved, 0, 1), x->dtype), x);
    }
    return nv;
}

/* The norm_view of a layer_norm node: x over its last attr.i[1] dims. */
static norm_view ln_view(ag_tensor *out) {
    ag_tensor *x = out->in[0];
    norm_view nv = {.v = x};
    for (int d = x->ndim - (int)out->attr.i[1]; d < x->ndim; d++) nv.red[nv.nred++] = d;
    return nv;
}

/* The norm_view of a group_norm node: x as [N, G, C/G·S] over dim 2. */
static norm_view gn_view(ag_tensor *out) {
    ag_tensor *x = out->in[0];
    const int64_t N = x->shape[0], G = out->attr.i[0], S = ag__numel(x->ndim - 2, x->shape + 2);
    return (norm_view){.v = ag_reshape(x, AG_SHAPE(N, G, x->shape[1] / G * S)), .nred = 1, .red = {2}};
}

/* dx = Jᵀ(dy·w) (J = ∂x̂/∂x), dw = Σ dy·x̂, db = Σ dy; w, b seen over x by param (NULL: as they are) and
 * their gradients summed by psum (NULL: the engine sums the leading dims down). */
static ag_status norm_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin, norm_view nv,
                                     ag_tensor *(*param)(ag_tensor *, const ag_tensor *),
                                     ag_tensor *(*psum)(ag_tensor *)) {
    ag_tensor *x = out->in[0], *w = out->in[1];
    if (!nv.v || !normalize(&nv, out->attr.a)) return ag_last_status();
    if (ag__wants(out, 0)) {
        ag_tensor *g = w ? ag_mul(gout, param ? param(w, x) : w) : gout;
        if (!(gin[0] = shaped_as(xhat_jacobian(&nv, shaped_as(g, nv.v)), x))) return ag_last_status();
    }
    if (ag__wants(out, 1)) {
        ag_tensor *t = ag_mul(gout, shaped_as(nv.xhat, x));
        if (!(gin[1] = psum && t ? psum(t) : t)) return ag_last_status();
    }
    if (ag__wants(out, 2) && !(gin[2] = psum ? psum(gout) : gout)) return ag_last_status();
    return AG_OK;
}

/* dy = J·dx·w + x̂·dw + db (J = ∂x̂/∂x); w, b seen over x by param (NULL: as they are). */
static ag_tensor *norm_jvp(ag_tensor *out, ag_tensor *const *tin, norm_view nv,
                           ag_tensor *(*param)(ag_tensor *, const ag_tensor *)) {
    ag_tensor *x = out->in[0], *w = out->in[1], *dy = NULL;
    if (!nv.v || !normalize(&nv, out->attr.a)) return NULL;
    if (tin[0]) {
        dy = shaped_as(xhat_jacobian(&nv, shaped_as(tin[0], nv.v)), x);
        if (dy && w) dy = ag_mul(dy, param ? param(w, x) : w);
        if (!dy) return NULL;
    }
    if (out->nin > 1 && tin[1] && !(dy = ag__jvp_add(dy, ag_mul(shaped_as(nv.xhat, x), param ? param(tin[1], x) : tin[1]))))
        return NULL;
    if (out->nin > 2 && tin[2]) {
        ag_tensor *db = param ? param(tin[2], x) : tin[2];
        dy = dy ? ag_add(dy, db) : ag_add(ag_zeros_like(out), db);
    }
    return dy;
}

/* batch_norm: dx = Jᵀ(dy·w_c), dw = Σ_c dy·x̂, db = Σ_c dy (J = ∂x̂/∂x; eval: J = r_c) */
static ag_status bn_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    return norm_backward_graph(out, gout, gin, bn_view(out), per_channel, channel_sum);
}
/* batch_norm: dy = J·dx·w_c + x̂·dw_c + db_c */
static ag_tensor *bn_jvp(ag_tensor *out, ag_tensor *const *tin) { return norm_jvp(out, tin, bn_view(out), per_channel); }
/* batch_norm_relu: batch_norm's adjoint of dz = dy·[y > 0] */
static ag_status bn_relu_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *gz = ag_mul(gout, ag__relu_mask(out));
    return gz ? bn_backward_graph(out, gz, gin) : ag_last_status();
}
/* batch_norm_relu: dy = (J·dx·w_c + x̂·dw_c + db_c)·[y > 0] */
static ag_tensor *bn_relu_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *t = bn_jvp(out, tin);
    return t ? ag_mul(t, ag__relu_mask(out)) : NULL;
}
/* batch_norm_relu_dropout: batch_norm's adjoint of dz = dy·[y > 0]/(1 - p) (attr.b = 1/(1 - p)) */
static ag_status bn_relu_drop_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *gz = ag_mul(gout, ag_mul_scalar(ag__relu_mask(out), out->attr.b));
    return gz ? bn_backward_graph(out, gz, gin) : ag_last_status();
}
/* batch_norm_relu_dropout: dy = (J·dx·w_c + x̂·dw_c + db_c)·[y > 0]/(1 - p) */
static ag_tensor *bn_relu_drop_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *t = bn_jvp(out, tin);
    return t ? ag_mul(t, ag_mul_scalar(ag__relu_mask(out), out->attr.b)) : NULL;
}
/* layer_norm: dx = Jᵀ(dy·w), dw = Σ_rows dy·x̂, db = Σ_rows dy */
static ag_status ln_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    return norm_backward_graph(out, gout, gin, ln_view(out), NULL, NULL);
}
/* layer_norm: dy = J·dx·w + x̂·dw + db */
static ag_tensor *ln_jvp(ag_tensor *out, ag_tensor *const *tin) { return norm_jvp(out, tin, ln_view(out), NULL); }
/* group_norm: dx = Jᵀ(dy·w_c) over each group, dw = Σ_c dy·x̂, db = Σ_c dy */
static ag_status gn_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    return norm_backward_graph(out, gout, gin, gn_view(out), per_channel, channel_sum);
}
/* group_norm: dy = J·dx·w_c + x̂·dw_c + db_c */
static ag_tensor *gn_jvp(ag_tensor *out, ag_tensor *const *tin) { return norm_jvp(out, tin, gn_view(out), per_channel); }

/* ---- batch_norm --------------------------------------------------------------------------------------- */
static ag_status bn_backward(ag_tensor *out, ag_tensor *gout);
/* y = (x - μ_c)·r_c·w_c + b_c, r_c = 1/√(σ²_c + ε);  training: dx = w·r·(dy - mean_c(dy) - x̂·mean_c(dy·x̂)), eval: dx = w·r·dy; dw = Σ_c dy·x̂, db = Σ_c dy */
static const ag_op op_batch_norm = {
    .name = "batch_norm", .grad_fn = "NativeBatchNormBackward0", .backward = bn_backward,
    .saves = AG_SAVES_IN0 | AG_SAVES_IN1,
    .math = "y = x̂·w_c + b_c, x̂ = (x - μ_c)/√(σ²_c + ε) (batch statistics in training, running ones in eval);  "
            "dx = w_c/√(σ²_c + ε)·(dy - mean_c(dy) - x̂·mean_c(dy·x̂)) (eval: w_c·dy/√(σ²_c + ε)), dw = Σ_c dy·x̂, "
            "db = Σ_c dy",
    .backward_graph = bn_backward_graph, .jvp = bn_jvp,
    .tangent = "ẏ = w_c/√(σ²_c + ε)·(ẋ - mean_c(ẋ) - x̂·mean_c(ẋ·x̂)) + x̂·ẇ_c + ḃ_c (eval: w_c·ẋ/√(σ²_c + ε) + x̂·ẇ_c + "
               "ḃ_c)"};

/* y = relu(batch_norm(x)) with relu applied as y is made (no pass of its own over [N, C, L]); the adjoint is
 * batch norm's of relu's dz = dy·[y > 0], over planes of at most BN_RELU_PLANE_BYTES with [y > 0] remade from x
 * and the saved scale and shift plane by plane in L1, else dz in a scratch tensor (nn.Sequential's BatchNorm
 * then ReLU, ag_batch_norm_relu) */
static const ag_op op_batch_norm_relu = {
    .name = "batch_norm_relu", .grad_fn = "ReluBackward0", .backward = bn_backward,
    .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_SAVES_OUT,
    .math = "y = relu(x̂·w_c + b_c), x̂ = (x - μ_c)/√(σ²_c + ε);  batch_norm's adjoint of dz = dy·[y > 0]",
    .backward_graph = bn_relu_backward_graph, .jvp = bn_relu_jvp,
    .tangent = "ẏ = batch_norm's ẏ·[y > 0]"};

/* y = relu(batch_norm(x))·m, m dropout's mask (m_i = Bernoulli(1 - p)/(1 - p), drawn as ag_dropout draws it),
 * training only, relu and the mask applied as y is made over [N, C] (a pass of its own over planes), neither
 * batch norm's y nor the mask stored: the adjoint is dz = dy·[y > 0]/(1 - p) (y > 0 exactly where relu and the
 * mask both kept the value) into a scratch tensor, then batch norm's (nn.Sequential's BatchNorm1d, ReLU,
 * Dropout over [N, C], ag_batch_norm_relu_dropout).  attr.b: 1/(1 - p). */
static const ag_op op_batch_norm_relu_dropout = {
    .name = "batch_norm_relu_dropout", .grad_fn = "MulBackward0", .backward = bn_backward,
    .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_SAVES_OUT,
    .math = "y = relu(x̂·w_c + b_c)·m, x̂ = (x - μ_c)/√(σ²_c + ε), m_i = Bernoulli(1 - p)/(1 - p);  batch_norm's "
            "adjoint of dz = dy·[y > 0]/(1 - p)",
    .backward_graph = bn_relu_drop_backward_graph, .jvp = bn_relu_drop_jvp,
    .tangent = "ẏ = batch_norm's ẏ·[y > 0]/(1 - p)"};

/* y = (x - μ_c)/√(σ²_c + ε)·w_c + b_c (relu of it for op_batch_norm_relu, times dropout's mask of keep
 * probability 1 - p for op_batch_norm_relu_dropout), batch statistics (running ones updated) or running
 * statistics; row: the op recorded */
static ag_tensor *batch_norm(const ag_op *row, ag_tensor *x, ag_tensor *running_mean, ag_tensor *running_var,
                             ag_tensor *weight, ag_tensor *bias, bool training, double momentum, double eps, double p) {
    const bool drop = row == &op_batch_norm_relu_dropout, relu = drop || row == &op_batch_norm_relu;
    const char *op = "batch_norm";
    char s1[AG_SHAPE_STR];
    if (ag__check_float(op, x, NULL)) return NULL;
    if (x->ndim < 2)
        return ag__fail_null(AG_ERR_SHAPE, "batch_norm: input %s needs at least 2 dims (N, C, *)", ag__tshape(s1, x));
    int64_t N = x->shape[0], C = x->shape[1], L = ag__numel(x->ndim - 2, x->shape + 2);
    if (check_param(op, "running_mean", running_mean, x, 1, &C) || check_param(op, "running_var", running_var, x, 1, &C) ||
        check_param(op, "weight", weight, x, 1, &C) || check_param(op, "bias", bias, x, 1, &C))
        return NULL;
    if (!training && (!running_mean || !running_var))
        return ag__fail_null(AG_ERR_ARG, "batch_norm: running_mean and running_var are required in evaluation mode");
    if (L == 0 || C == 0) N = 0; /* no element: the kernels' lanes (N·C of length L) are not walked, N·L cannot wrap */
    if (training && N * L == 1)
        return ag__fail_null(AG_ERR_VALUE, "batch_norm: expected more than 1 value per channel when training, got input %s",
                             ag__tshape(s1, x));
    ag_tensor *y = ag__new(x->dtype, x->ndim, x->shape);
    ag_tensor *xc = y ? ag__contig_or_copy(x) : NULL;
    /* saved: μ and r per channel; batch_norm_relu also the forward's scale and shift, from which its adjoint
     * remakes [y > 0] (bn_planes_backward) */
    const bool keep_affine = row == &op_batch_norm_relu;
    ag_tensor *stats = xc ? ag__new_unowned(AG_F64, 2, (int64_t[]){keep_affine ? 4 : 2, C}, false) : NULL;
    double *work = stats ? ag__alloc_n(4 * C + (L == 1 ? bn_cols_part_len(N, C) : 0), sizeof(double)) : NULL;
    if (!work) {
        ag_release(xc);
        ag_release(stats);
        ag__discard(y);
        return NULL;
    }
    double *mean = (double *)ag__ptr(stats), *rstd = mean + C, *sq = work, *scale = work + C, *shift = work + 2 * C, *aux = work + 3 * C;
    int64_t M = N * L;
    if (training) { /* statistics, constants and y in one region */
        const ag_keep_key key = drop ? ag__rand_keep_key(1 - p) : (ag_keep_key){0, 0}; /* ag_dropout's one draw */
        for (int64_t c = 0; c < C; c++) scale[c] = 1, shift[c] = 0;
        if (weight) read_vec(weight, scale);
        if (bias) read_vec(bias, shift);
        if (L > 1) BY_DTYPE(x->dtype, bn_planes_train)(ag__ptr(y), ag__ptr(xc), N, C, L, eps, mean, rstd, sq, scale, shift, relu);
        else BY_DTYPE(x->dtype, bn_cols_train)(ag__ptr(y), ag__ptr(xc), N, C, eps, mean, rstd, sq, scale, shift,
                                               drop ? &key : NULL, 1 / (1 - p), relu, line_align(work + 4 * C));
        if (L > 1 && drop) BY_DTYPE(x->dtype, bn_drop)(ag__ptr(y), ag_numel(y), key, 1 / (1 - p));
        if (M > 0 && running_mean) { /* r ← (1 - momentum)·r + momentum·μ */
            read_vec(running_mean, aux);
            for (int64_t c = 0; c < C; c++) aux[c] = momentum * mean[c] + (1 - momentum) * aux[c];
            write_vec(running_mean, aux);
            ag__bump_version(running_mean);
        }
        if (M > 0 && running_var) { /* r ← (1 - momentum)·r + momentum·σ²_unbiased */
            read_vec(running_var, aux);
            for (int64_t c = 0; c < C; c++)
                aux[c] = momentum * (M > 1 ? sq[c] / (double)(M - 1) : NAN) + (1 - momentum) * aux[c];
            write_vec(running_var, aux);
            ag__bump_version(running_var);
        }
    } else { /* running statistics: y = x·scale + shift */
        read_vec(running_mean, mean);
        read_vec(running_var, aux);
        for (int64_t c = 0; c < C; c++) rstd[c] = 1 / sqrt(aux[c] + eps);
        for (int64_t c = 0; c < C; c++) scale[c] = rstd[c], shift[c] = 0;
        if (weight) {
            read_vec(weight, aux);
            for (int64_t c = 0; c < C; c++) scale[c] *= aux[c];
        }
        if (bias) read_vec(bias, shift);
        for (int64_t c = 0; c < C; c++) shift[c] -= mean[c] * scale[c];
        BY_DTYPE(x->dtype, bn_apply)(ag__ptr(y), ag__ptr(xc), N, C, L, scale, shift, relu);
    }
    if (keep_affine) {
        memcpy(rstd + C, scale, (size_t)C * sizeof(double));
        memcpy(rstd + 2 * C, shift, (size_t)C * sizeof(double));
    }
    ag__free(work);
    ag_release(xc);
    ag_tensor *in[3] = {x, weight, bias};
    y = ag__record_saved(y, row, in, 3, stats);
    if (y && y->op) y->attr.i[0] = training, y->attr.a = eps, y->attr.b = drop ? 1 / (1 - p) : 1;
    return ag__check_finite(y, op);
}

/* y = (x - μ_c)/√(σ²_c + ε)·w_c + b_c, batch statistics (running ones updated) or running statistics */
ag_tensor *ag_batch_norm(ag_tensor *x, ag_tensor *running_mean, ag_tensor *running_var, ag_tensor *weight,
                         ag_tensor *bias, bool training, double momentum, double eps) {
    AG_CHECK_HANDLES(NULL, "batch_norm", x, running_mean, running_var, weight, bias);
    return x ? batch_norm(&op_batch_norm, x, running_mean, running_var, weight, bias, training, momentum, eps, 0) : NULL;
}

/* relu(ag_batch_norm(...)) as one op */
ag_tensor *ag_batch_norm_relu(ag_tensor *x, ag_tensor *running_mean, ag_tensor *running_var, ag_tensor *weight,
                               ag_tensor *bias, bool training, double momentum, double eps) {
    AG_CHECK_HANDLES(NULL, "batch_norm_relu", x, running_mean, running_var, weight, bias);
    return x ? batch_norm(&op_batch_norm_relu, x, running_mean, running_var, weight, bias, training, momentum, eps, 0)
             : NULL;
}

/* ag_dropout(ag_batch_norm_relu(...), p, training) as one op where dropout draws a mask (training, 0 < p < 1) */
ag_tensor *ag_batch_norm_relu_dropout(ag_tensor *x, ag_tensor *running_mean, ag_tensor *running_var,
                                      ag_tensor *weight, ag_tensor *bias, bool training, double momentum, double eps,
                                      double p) {
    AG_CHECK_HANDLES(NULL, "batch_norm_relu_dropout", x, running_mean, running_var, weight, bias);
    if (!x) return NULL;
    if (!(p >= 0 && p <= 1)) /* before batch norm updates the running statistics */
        return ag__fail_null(AG_ERR_ARG, "dropout: probability has to be between 0 and 1, but got %g", p);
    if (training && p > 0 && p < 1)
        return batch_norm(&op_batch_norm_relu_dropout, x, running_mean, running_var, weight, bias, training, momentum,
                          eps, p);
    if (!(training && p == 1))
        return batch_norm(&op_batch_norm_relu, x, running_mean, running_var, weight, bias, training, momentum, eps, 0);
    /* p = 1: relu(batch_norm(x))·0, as ag_dropout (and PyTorch); a composite, so that the intermediate is released
     * with no scope open too */
    if (ag__composite_begin("batch_norm_relu_dropout")) return NULL;
    ag_tensor *r = batch_norm(&op_batch_norm_relu, x, running_mean, running_var, weight, bias, training, momentum, eps, 0);
    return ag__composite_end(r ? ag_mul_scalar(r, 0) : NULL);
}

/* dx = w·r·(dy - Σdy/M - x̂·Σdy·x̂/M) (eval: w·r·dy), dw = Σ dy·x̂, db = Σ dy, per channel; batch_norm_relu:
 * of dz = dy·[y > 0] (relu's adjoint) */
static ag_status bn_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0], *w = out->in[1], *b = out->in[2];
    const bool drop = out->op == &op_batch_norm_relu_dropout, relu = drop || out->op == &op_batch_norm_relu;
    bool training = out->attr.i[0] != 0;
    int64_t N = x->shape[0], C = x->shape[1], L = ag__numel(x->ndim - 2, x->shape + 2);
    if (L == 0 || C == 0) N = 0; /* no element: nothing to walk (and N·L cannot wrap) */
    const double *mean = (const double *)ag__ptr(out->saved), *rstd = mean + C;
    /* 5·C doubles, 4·C values of x's dtype, the partials of the sums by chunks of rows (bn_cols_backward) */
    double *work = ag__alloc_n(9 * C + (L == 1 ? bn_cols_part_len(N, C) : 0), sizeof(double));
    ag_tensor *xc = work ? ag__contig_or_copy(x) : NULL;
    /* batch_norm_relu over planes of at most BN_RELU_PLANE_BYTES: relu's adjoint is made plane by plane from x,
     * dy and the forward's saved scale and shift inside both passes of bn_planes_backward (no gz, y not read).
     * Over [N, C] by chunks of rows (N > bn_chunk_rows(N)) both passes make it from y and dy (bn_cols_fold_chunk:
     * four rows of g into a block in L1, which the sums then read; bn_cols_fold_x), no gz (session 21:
     * mlp_bn_dropout's three adjoints one region each instead of two).  Else relu's adjoint goes into gz, which
     * batch norm's adjoint then reads: over [N, C] of one chunk a pass of its own, over
     * planes written plane by plane in the sums pass (bn_planes_backward), read back from L1.  Reading y in
     * both of batch norm's passes instead (no gz) was slower for cnn_fashion's bn1 (one thread: 6.8-7.1
     * against 5.8-5.9 ms for the two passes apart), and gcc 12 -O3 vectorised its masked float64 sums
     * wrongly for AVX2 (the x86-64-v3 clone summed dy unmasked; float32, the other clones and clang were
     * right); the sums here read gz, unmasked. */
    const bool of_x = relu && !drop && L > 1 && L * (int64_t)ag_dtype_size(x->dtype) <= BN_RELU_PLANE_BYTES;
    const double *affine = of_x ? rstd + C : NULL; /* the forward's scale, then shift */
    /* over [N, C] by chunks of rows relu's (and dropout's) adjoint is made from y and dy inside both passes of
     * bn_cols_backward (no gz, no pass and region of its own) */
    const bool fold = relu && L == 1 && N > bn_chunk_rows(N);
    ag_tensor *gz = xc && relu && !of_x && !fold ? ag__new_unowned(x->dtype, x->ndim, x->shape, false) : NULL;
    if (!xc || (relu && !of_x && !fold && !gz)) {
        ag_release(xc);
        ag__free(work);
        return AG_ERR_NOMEM;
    }
    if (gz && (L == 1 || drop)) /* (dropout's over planes too: the planes' sums then read gz for dy) */
        BY_DTYPE(x->dtype, bn_relu_grad)(ag__ptr(gz), ag__ptr(out), ag__ptr(gout), ag_numel(gz), out->attr.b);
    double *sdy = work, *sdyx = work + C, *k = work + 2 * C, *a = work + 3 * C, *bb = work + 4 * C;
    ag_status st = AG_OK;
    /* the sums, the constants and dx = w·r·(dy - Σdy/M - (x - μ)·r²·Σdy(x - μ)/M) (eval: w·r·dy) in one region */
    ag_tensor *gx = ag__wants(out, 0) ? ag__new_unowned(x->dtype, x->ndim, x->shape, false) : NULL;
    if (!ag__wants(out, 0) || gx) {
        for (int64_t c = 0; c < C; c++) k[c] = 1;
        if (w) read_vec(w, k);
        if (L == 1)
            BY_DTYPE(x->dtype, bn_cols_backward)(gx ? ag__ptr(gx) : NULL, ag__ptr(gz ? gz : gout), ag__ptr(xc),
                                                 fold ? ag__ptr(out) : NULL, out->attr.b, N, C, training, mean, rstd,
                                                 sdy, sdyx, k, a, bb, work + 5 * C, line_align(work + 9 * C));
        else
            BY_DTYPE(x->dtype, bn_planes_backward)(gx ? ag__ptr(gx) : NULL, ag__ptr(drop ? gz : gout), ag__ptr(xc),
                                                   gz && !drop ? ag__ptr(gz) : NULL, ag__ptr(out), affine,
                                                   affine ? affine + C : NULL, N, C, L, training, mean, rstd, sdy, sdyx,
                                                   k, a, bb);
    }
    if (ag__wants(out, 0)) st = ag__accumulate(x, gx); /* gx NULL: AG_ERR_NOMEM */
    ag_release(xc);
    ag_release(gz);
    if (!st && ag__wants(out, 1)) { /* dw = Σ dy·x̂ */
        for (int64_t c = 0; c < C; c++) sdyx[c] *= rstd[c];
        st = ag__accumulate(w, tensor_of(sdyx, w->dtype, 1, &C));
    }
    if (!st && ag__wants(out, 2)) st = ag__accumulate(b, tensor_of(sdy, b->dtype, 1, &C)); /* db = Σ dy */
    ag__free(work);
    return st;
}

/* ---- layer_norm --------------------------------------------------------------------------------------------- */
static ag_status ln_backward(ag_tensor *out, ag_tensor *gout);
/* y = (x - μ_row)·r_row·w + b, r = 1/√(σ²_row + ε);  dx = r·(g - mean(g) - x̂·mean(g·x̂)), g = dy·w; dw = Σ_rows dy·x̂, db = Σ_rows dy */
static const ag_op op_layer_norm = {
    .name = "layer_norm", .grad_fn = "NativeLayerNormBackward0", .backward = ln_backward,
    .saves = AG_SAVES_IN0 | AG_SAVES_IN1,
    .math = "y = x̂·w + b, x̂ = (x - μ)/√(σ² + ε) over the trailing dims;  "
            "dx = (g - mean(g) - x̂·mean(g·x̂))/√(σ² + ε) with g = dy·w, dw = Σ_rows dy·x̂, db = Σ_rows dy",
    .backward_graph = ln_backward_graph, .jvp = ln_jvp,
    .tangent = "ẏ = w·(ẋ - mean(ẋ) - x̂·mean(ẋ·x̂))/√(σ² + ε) + x̂·ẇ + ḃ"};

/* y = (x - μ_row)/√(σ²_row + ε)·w + b over the trailing normalized_shape */
ag_tensor *ag_layer_norm(ag_tensor *x, ag_shape normalized_shape, ag_tensor *weight, ag_tensor *bias, double eps) {
    AG_CHECK_HANDLES(NULL, "layer_norm", x, weight, bias);
    if (!x) return NULL;
    const char *op = "layer_norm";
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (ag__check_float(op, x, NULL)) return NULL;
    int nd = normalized_shape.ndim;
    if (nd < 1 || nd > AG_MAX_DIMS)
        return ag__fail_null(AG_ERR_ARG, "layer_norm: normalized_shape needs at least 1 dim, got %d", nd);
    bool fits = nd <= x->ndim;
    for (int d = 0; fits && d < nd; d++) fits = x->shape[x->ndim - nd + d] == normalized_shape.dim[d];
    if (!fits)
        return ag__fail_null(AG_ERR_SHAPE, "layer_norm: given normalized_shape=%s, expected input with shape [*, %s, but got "
                             "input of size %s", ag__shape_str(s1, nd, normalized_shape.dim),
                             ag__shape_str(s2, nd, normalized_shape.dim) + 1, ag__tshape((char[AG_SHAPE_STR]){0}, x));
    if (check_param(op, "weight", weight, x, nd, normalized_shape.dim) ||
        check_param(op, "bias", bias, x, nd, normalized_shape.dim))
        return NULL;
    int64_t K = ag__numel(nd, normalized_shape.dim), R = ag__numel(x->ndim - nd, x->shape);
    if (K == 0) R = 0; /* no element: no row to normalise (and no statistics to keep) */
    ag_tensor *y = ag__new(x->dtype, x->ndim, x->shape);
    ag_tensor *xc = y ? ag__contig_or_copy(x) : NULL;
    ag_tensor *stats = xc ? ag__new_unowned(AG_F64, 2, (int64_t[]){R, 2}, false) : NULL;
    const size_t es = ag_dtype_size(x->dtype);
    char *wb = stats ? ag__alloc_n(K, 2 * es) : NULL; /* weight and bias in x's dtype */
    if (!wb) {
        ag_release(xc);
        ag_release(stats);
        ag__discard(y);
        return NULL;
    }
    if (weight) ag_copy_to(weight, wb, K, x->dtype);
    if (bias) ag_copy_to(bias, wb + K * es, K, x->dtype);
    BY_DTYPE(x->dtype, ln_forward)(ag__ptr(y), ag__ptr(xc), R, K, weight ? wb : NULL, bias ? wb + K * es : NULL, eps,
                                   (double *)ag__ptr(stats));
    ag__free(wb);
    ag_release(xc);
    ag_tensor *in[3] = {x, weight, bias};
    y = ag__record_saved(y, &op_layer_norm, in, 3, stats);
    if (y && y->op) y->attr.i[0] = K, y->attr.i[1] = nd, y->attr.a = eps;
    return ag__check_finite(y, op);
}

/* dx = r·(g - Σg/K - x̂·Σg·x̂/K), g = dy·w;  dw = Σ_rows dy·x̂, db = Σ_rows dy */
static ag_status ln_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0], *w = out->in[1], *b = out->in[2];
    int64_t K = out->attr.i[0], R = K ? ag_numel(x) / K : 0;
    bool want_w = ag__wants(out, 1), want_b = ag__wants(out, 2);
    double *work = ag__alloc_n(K, 3 * sizeof(double)); /* dw, db, and the weight in x's dtype */
    if (work) memset(work, 0, sizeof(double) * 2 * (size_t)K);
    ag_tensor *xc = work ? ag__contig_or_copy(x) : NULL;
    ag_tensor *gx = xc && ag__wants(out, 0) ? ag__new_unowned(x->dtype, x->ndim, x->shape, false) : NULL;
    if (!xc || (ag__wants(out, 0) && !gx)) {
        ag__free(work);
        ag_release(xc);
        return AG_ERR_NOMEM;
    }
    double *dw = work, *db = work + K, *wv = work + 2 * K;
    if (w) ag_copy_to(w, wv, K, x->dtype);
    BY_DTYPE(x->dtype, ln_backward)(gx ? ag__ptr(gx) : NULL, ag__ptr(gout), ag__ptr(xc), R, K, w ? wv : NULL,
                                    (const double *)ag__ptr(out->saved), want_w ? dw : NULL, want_b ? db : NULL);
    ag_release(xc);
    ag_status st = gx ? ag__accumulate(x, gx) : AG_OK;
    if (!st && want_w) st = ag__accumulate(w, tensor_of(dw, w->dtype, w->ndim, w->shape));
    if (!st && want_b) st = ag__accumulate(b, tensor_of(db, b->dtype, b->ndim, b->shape));
    ag__free(work);
    return st;
}

/* ---- group_norm --------------------------------------------------------------------------------------------- */
static ag_status gn_backward(ag_tensor *out, ag_tensor *gout);
/* y = (x - μ_ng)·r_ng·w_c + b_c over each group of C/G channels;  dx = r·(g - mean(g) - x̂·mean(g·x̂)), g = dy·w_c; dw_c = Σ dy·x̂, db_c = Σ dy */
static const ag_op op_group_norm = {
    .name = "group_norm", .grad_fn = "NativeGroupNormBackward0", .backward = gn_backward,
    .saves = AG_SAVES_IN0 | AG_SAVES_IN1,
    .math = "y = x̂·w_c + b_c, x̂ = (x - μ)/√(σ² + ε) over each sample's group of C/G channels;  "
            "dx = (g - mean(g) - x̂·mean(g·x̂))/√(σ² + ε) with g = dy·w_c, dw_c = Σ dy·x̂, db_c = Σ dy over channel c",
    .backward_graph = gn_backward_graph, .jvp = gn_jvp,
    .tangent = "ẏ = w_c·(ẋ - mean(ẋ) - x̂·mean(ẋ·x̂))/√(σ² + ε) + x̂·ẇ_c + ḃ_c, the means over each group"};

ag_tensor *ag_group_norm(ag_tensor *x, int64_t num_groups, ag_tensor *weight, ag_tensor *bias, double eps) {
    AG_CHECK_HANDLES(NULL, "group_norm", x, weight, bias);
    if (!x) return NULL;
    const char *op = "group_norm";
    char s1[AG_SHAPE_STR];
    if (ag__check_float(op, x, NULL)) return NULL;
    if (x->ndim < 2)
        return ag__fail_null(AG_ERR_SHAPE, "group_norm: input %s needs at least 2 dims (N, C, *)", ag__tshape(s1, x));
    const int64_t N = x->shape[0], C = x->shape[1], G = num_groups;
    if (G < 1 || C % G)
        return ag__fail_null(AG_ERR_SHAPE, "group_norm: input %s has %lld channels, not divisible into num_groups=%lld",
                             ag__tshape(s1, x), (long long)C, (long long)G);
    if (check_param(op, "weight", weight, x, 1, &C) || check_param(op, "bias", bias, x, 1, &C)) return NULL;
    const int64_t S = ag__numel(x->ndim - 2, x->shape + 2), R = C && S ? N * G : 0; /* rows of C/G·S values */
    const size_t es = ag_dtype_size(x->dtype);
    ag_tensor *y = ag__new(x->dtype, x->ndim, x->shape);
    ag_tensor *xc = y ? ag__contig_or_copy(x) : NULL;
    ag_tensor *stats = xc ? ag__new_unowned(AG_F64, 2, (int64_t[]){R, 2}, false) : NULL;
    char *wb = stats ? ag__alloc_n(C + 1, 2 * es) : NULL; /* weight and bias in x's dtype */
    if (!wb) {
        ag_release(xc);
        ag_release(stats);
        ag__discard(y);
        return NULL;
    }
    if (weight) ag_copy_to(weight, wb, C, x->dtype);
    if (bias) ag_copy_to(bias, wb + C * (int64_t)es, C, x->dtype);
    if (R)
        BY_DTYPE(x->dtype, gn_forward)(ag__ptr(y), ag__ptr(xc), N, G, C / G, S, weight ? wb : NULL,
                                       bias ? wb + C * (int64_t)es : NULL, eps, (double *)ag__ptr(stats));
    ag__free(wb);
    ag_release(xc);
    ag_tensor *in[3] = {x, weight, bias};
    y = ag__record_saved(y, &op_group_norm, in, 3, stats);
    if (y && y->op) y->attr.i[0] = G, y->attr.a = eps;
    return ag__check_finite(y, op);
}

/* Per row: dx = r·(g - Σg/K - x̂·Σg·x̂/K), g = dy·w_c;  dw_c = Σ dy·x̂, db_c = Σ dy over the rows and S */
static ag_status gn_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0], *w = out->in[1], *b = out->in[2];
    const int64_t N = x->shape[0], C = x->shape[1], G = out->attr.i[0];
    const int64_t S = ag__numel(x->ndim - 2, x->shape + 2), R = C && S ? N * G : 0, NC = R ? N * C : 0;
    double *work = ag__alloc_n(C + 1, 3 * sizeof(double)); /* dw and db per c, the weight in x's dtype */
    double *sums = work ? ag__alloc_n(NC + 1, 2 * sizeof(double)) : NULL; /* Σ dy and Σ dy·x̂ per (n, c) */
    ag_tensor *xc = sums ? ag__contig_or_copy(x) : NULL;
    ag_tensor *gx = xc && ag__wants(out, 0) ? ag__new_unowned(x->dtype, x->ndim, x->shape, false) : NULL;
    if (!xc || (ag__wants(out, 0) && !gx)) {
        ag__free(sums);
        ag__free(work);
        ag_release(xc);
        return AG_ERR_NOMEM;
    }
    double *sdy = sums, *sdyx = sums + NC, *dw = work, *db = work + C;
    void *wv = work + 2 * C;
    if (w) ag_copy_to(w, wv, C, x->dtype);
    if (R)
        BY_DTYPE(x->dtype, gn_backward)(gx ? ag__ptr(gx) : NULL, ag__ptr(gout), ag__ptr(xc), N, G, C / G, S,
                                        w ? wv : NULL, (const double *)ag__ptr(out->saved), sdy, sdyx);
    ag_release(xc);
    for (int64_t c = 0; c < C; c++) { /* dw_c = Σ_n Σ dy·x̂, db_c = Σ_n Σ dy, in n order */
        double sw = 0, sb = 0;
        for (int64_t n = 0; n < N && R; n++) sw += sdyx[n * C + c], sb += sdy[n * C + c];
        dw[c] = sw;
        db[c] = sb;
    }
    ag_status st = gx ? ag__accumulate(x, gx) : AG_OK;
    if (!st && ag__wants(out, 1)) st = ag__accumulate(w, tensor_of(dw, w->dtype, 1, &C));
    if (!st && ag__wants(out, 2)) st = ag__accumulate(b, tensor_of(db, b->dtype, 1, &C));
    ag__free(sums);
    ag__free(work);
    return st;
}

const ag_op *const ag__norm_ops[] = {&op_batch_norm, &op_batch_norm_relu, &op_batch_norm_relu_dropout, &op_layer_norm,
                                     &op_group_norm, NULL};

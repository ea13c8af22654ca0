/*
 * pool.c - 2-d pooling: max (F.max_pool2d, with indices), average (F.avg_pool2d),
 * adaptive average (F.adaptive_avg_pool2d), adaptive max (F.adaptive_max_pool2d,
 * with indices) and max unpooling (F.max_unpool2d, max pooling's indices read back); the 1-d variants are the 2-d ones
 * over a height of 1 (the same ops, the node keeping the geometry).  The average poolings' adjoints are ops too
 * (avg_pool2d_backward, adaptive_avg_pool2d_backward), so that they differentiate to any order.
 *
 * x is seen as planes [P, H, W] (P = N·C, or C when unbatched); each output
 * element reads one window of its plane.  The loops follow PyTorch's CPU kernels
 * window by window (window bounds, NaN winning the max, the divisor of average
 * pooling), written once for float and double, sums in double; max pooling and its adjoint
 * split the planes over threads when the windows hold enough elements.  The common 2 x 2,
 * stride 2 max pooling has a loop of its own: the same compares as selects over rows split
 * into even and odd columns, which vectorises (cnn_fashion's [128, 32, 28, 28] forward on
 * one thread: 16.1 ms with the window loop, whose branches random data mispredicts, 2.6 ms); unless the caller
 * asks for the indices, its node keeps each window's choice in a byte instead of an int64 index (an eighth of
 * the memory traffic for them, both ways), and its adjoint writes dx row by row from them.  Pooling is
 * memory-bound and runs in C for both dtypes, not in oneDNN's pooling
 * primitives: their max skips NaN (max of [1, NaN, 3, 2] is 3 in oneDNN 2.6,
 * NaN in PyTorch), their workspace is not PyTorch's indices, and their average
 * divides a ceil_mode window that overhangs the padding by the whole kernel.  Adaptive max pooling's
 * float32 windows of 16 columns or more go sixteen lanes at a time on AVX-512 (argmax_lanes_f32: the
 * scan's choices, session 20); max pooling at a stride of 1 along the rows a row of outputs at a time
 * (max_rows: each tap a compare over the row, the scan's choices, session 20).
 */
#include <math.h>
#include <string.h>
#include "core/iter.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "autograd/tape.h"
#include "agrad/ops.h"
#include "ops/jvp.h"

/* The windows of a pooling: planes P of H x W, kernel, stride, padding, dilation, output. */
typedef struct pool_geom {
    int64_t P, H, W, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW;
    bool exclude_pad; /* avg: the divisor counts only elements of x */
} pool_geom;

/* The planes a kernel walks: none when the output has no element, however many
 * planes or rows the other sizes make (2^40 rows of no column). */
static int64_t planes_walked(const pool_geom *g) { return g->OH == 0 || g->OW == 0 ? 0 : g->P; }

/* The first position ≥ 0 of lo, lo + d, lo + 2d, ... */
static int64_t first_inside(int64_t lo, int64_t d) { return lo >= 0 ? lo : lo + ag__ceil_div(-lo, d) * d; }

/* The widest output row max_fwd's 2 x 2 path takes (its window choices sit on the stack). */
#define MAX2X2_OW 1024

/* The output rows narrower than which max_bwd_2x2 zeroes a plane and puts dy in it (cnn_fashion's pool2, 7
 * wide: the vectorised rows' interleaving stores cost more than they saved) */
#define MAX2X2_NARROW 16

/* Whether g is 2 x 2 windows at stride 2 inside x (no padding, no dilation): max_fwd's vectorised path,
 * whose node keeps each window's choice in a byte (max_windows) */
static bool is_2x2(const pool_geom *g) {
    return g->KH == 2 && g->KW == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0 && g->dh == 1 &&
           g->dw == 1 && 2 * g->OH <= g->H && 2 * g->OW <= g->W && g->OW <= MAX2X2_OW;
}

/* Σ x[ih·W + iw] over rows [h0, h1) and columns [w0, w1), in float64: windows of ADAPTIVE_LANES columns or
 * more in ADAPTIVE_LANES partial sums (column iw into sum iw - w0 mod ADAPTIVE_LANES, the sums then added
 * pairwise, the columns left over after the last whole block added last), narrower ones element by element.
 * One chain of float64 adds was the adaptive average's forward: adaptive_avg_pool2d [8, 16, 32, 64] to
 * (3, 2), one thread, about 180 µs against PyTorch's 147 (session 18).  Another order of the float64
 * sum: the float32 result can differ in its last bit. */
enum { ADAPTIVE_LANES = 8 };
#define WINDOW_SUM(SUF, T)                                                                                    \
    static double window_sum_##SUF(const T *x, int64_t W, int64_t h0, int64_t h1, int64_t w0, int64_t w1) {  \
        double s = 0;                                                                                         \
        if (w1 - w0 < ADAPTIVE_LANES) {                                                                       \
            for (int64_t ih = h0; ih < h1; ih++)                                                              \
                for (int64_t iw = w0; iw < w1; iw++) s += x[ih * W + iw];                                     \
            return s;                                                                                         \
        }                                                                                                     \
        double acc[ADAPTIVE_LANES] = {0}, rest = 0;                                                           \
        const int64_t wb = w0 + (w1 - w0) / ADAPTIVE_LANES * ADAPTIVE_LANES;                                  \
        for (int64_t ih = h0; ih < h1; ih++) {                                                                \
            const T *r = x + ih * W;                                                                          \
            for (int64_t iw = w0; iw < wb; iw += ADAPTIVE_LANES)                                              \
                for (int j = 0; j < ADAPTIVE_LANES; j++) acc[j] += r[iw + j];                                 \
            for (int64_t iw = wb; iw < w1; iw++) rest += r[iw];                                               \
        }                                                                                                     \
        for (int w = ADAPTIVE_LANES / 2; w > 0; w /= 2)                                                       \
            for (int j = 0; j < w; j++) acc[j] += acc[j + w];                                                 \
        return acc[0] + rest;                                                                                 \
    }
WINDOW_SUM(f32, float)
WINDOW_SUM(f64, double)

#if AG_X86_INTRINSICS
#include <immintrin.h>
/* The place h·W + w of the max of a float32 window (xp's rows [h0, h1), columns [w0, w1)) that the
 * adaptive max's scan in row order keeps (m = v, best = its place where v > m or v is NaN, from m = -inf
 * and the first place: the last NaN if any, else the first element of the max's value), into *best, for
 * windows of 16 columns or more on AVX-512 (else false, nothing done).  Column w goes to lane
 * (w - w0) mod 16 (a row's last columns short of a whole 16 to the first lanes, a masked load); each lane
 * keeps its own scan's choice, started from its first element (the same as from -inf), as the ordinal of
 * its element in its scan; then the lanes' choices merge: the NaN of the latest place if a lane holds
 * one, else the first place among the lanes holding the max.  That is the whole scan's choice, so the
 * same y and indices.  (The scan's compare and branch an element was adaptive_max_pool2d's forward:
 * [8, 16, 32, 64] to (3, 2), one thread, 209 µs against PyTorch's 176 in sweep20's re-time.) */
__attribute__((target("avx512f"))) static bool argmax_lanes_f32(const float *xp, int64_t W, int64_t h0, int64_t h1,
                                                               int64_t w0, int64_t w1, int64_t *best) {
    const int64_t nb = (w1 - w0) / 16, rem = (w1 - w0) % 16, per = nb + (rem > 0); /* ordinals a row */
    if (nb == 0 || (h1 - h0) * per >= INT32_MAX) return false;
    const __mmask16 tail = (__mmask16)((1u << rem) - 1);
    __m512 m = _mm512_loadu_ps(xp + h0 * W + w0);
    __m512i q = _mm512_setzero_si512();
    int32_t ord = 0;
    for (int64_t ih = h0; ih < h1; ih++) {
        const float *r = xp + ih * W + w0;
        for (int64_t k = ih == h0; k < nb; k++) {
            const __m512 v = _mm512_loadu_ps(r + 16 * k);
            const __mmask16 c = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
            m = _mm512_mask_mov_ps(m, c, v);
            q = _mm512_mask_mov_epi32(q, c, _mm512_set1_epi32(ord + (int32_t)k));
        }
        if (rem) {
            const __m512 v = _mm512_maskz_loadu_ps(tail, r + 16 * nb);
            const __mmask16 c = tail & (_mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
            m = _mm512_mask_mov_ps(m, c, v);
            q = _mm512_mask_mov_epi32(q, c, _mm512_set1_epi32(ord + (int32_t)nb));
        }
        ord += (int32_t)per;
    }
    float mv[16];
    int32_t qv[16];
    _mm512_storeu_ps(mv, m);
    _mm512_storeu_si512((void *)qv, q);
    /* lane j's choice is the element (row, block) = (qv[j] / per, qv[j] % per) of column block·16 + j: the
     * places order as (qv[j], j) */
    int nan_j = -1, top_j = 0;
    for (int j = 0; j < 16; j++)
        if (mv[j] != mv[j]) nan_j = nan_j < 0 || qv[j] >= qv[nan_j] ? j : nan_j;
        else if (mv[top_j] != mv[top_j] || mv[j] > mv[top_j] || (mv[j] == mv[top_j] && qv[j] < qv[top_j])) top_j = j;
    const int j = nan_j >= 0 ? nan_j : top_j;
    *best = (h0 + qv[j] / per) * W + w0 + 16 * (qv[j] % per) + j;
    return true;
}
#define LANES_ARGMAX(T, xp, W, h0, h1, w0, w1, best) \
    (sizeof(T) == 4 && AG_VEC_512() && argmax_lanes_f32((const float *)(const void *)(xp), W, h0, h1, w0, w1, best))
#else
#define LANES_ARGMAX(T, xp, W, h0, h1, w0, w1, best) false
#endif

#define POOL_KERNELS(SUF, T, U)                                                                                \
    /* y = max over the window (a NaN wins, the last one if several); idx = its h·W + w */                   \
    /* max_fwd of 2 x 2 windows at stride 2 inside x (no padding, no dilation): the same compares in the \
     * same order, as selects (random data mispredicts branches) over rows deinterleaved into even and   \
     * odd columns, so that the loop vectorises.  Output rows j = p·OH + oh (y's rows, contiguous) go in  \
     * chunks of up to MAX2X2_OW outputs, so that narrow rows (7 wide after a 14 x 14 plane) still make a \
     * long vector loop instead of a scalar remainder each (cnn_fashion's pool2: 2.97 -> 1.01 ms); the     \
     * window choices k (0..3: top left, top right, bottom left, bottom right) into code when not NULL */ \
    AG_VEC_CLONES static void max_fwd_2x2_##SUF(const pool_geom *g, const T *x, T *y, int64_t *idx,          \
                                                uint8_t *code, int64_t p0, int64_t p1) {                   \
        const int64_t W = g->W, OW = g->OW, OH = g->OH, rows = MAX2X2_OW / OW;                                \
        T e0[MAX2X2_OW], o0[MAX2X2_OW], e1[MAX2X2_OW], o1[MAX2X2_OW];                                         \
        int32_t kr[MAX2X2_OW];                                                                                \
        for (int64_t j0 = p0 * OH; j0 < p1 * OH; j0 += rows) {                                                \
            const int64_t j1 = j0 + rows < p1 * OH ? j0 + rows : p1 * OH, n = (j1 - j0) * OW;                  \
            for (int64_t j = j0, p = j0 / OH, oh = j0 % OH; j < j1; j++, oh = oh + 1 < OH ? oh + 1 : 0, p += !oh) { \
                const T *r0 = x + (p * g->H + 2 * oh) * W, *r1 = r0 + W; /* row j = p·OH + oh, no division */ \
                const int64_t c = (j - j0) * OW;                                                              \
                for (int64_t ow = 0; ow < OW; ow++)                                                           \
                    e0[c + ow] = r0[2 * ow], o0[c + ow] = r0[2 * ow + 1], e1[c + ow] = r1[2 * ow],             \
                    o1[c + ow] = r1[2 * ow + 1];                                                              \
            }                                                                                                 \
            T *yr = y + j0 * OW;                                                                              \
            for (int64_t i = 0; i < n; i++) {                                                                 \
                /* a wins over the initial -inf (or ties with it at the same place) */                        \
                const T a = e0[i], b = o0[i], c = e1[i], d = o1[i];                                           \
                T m = a;                                                                                      \
                int32_t k = 0; /* 0..3: a, b, c, d */                                                         \
                m = ((b > m) | (b != b)) ? (k = 1, b) : m;                                                    \
                m = ((c > m) | (c != c)) ? (k = 2, c) : m;                                                    \
                m = ((d > m) | (d != d)) ? (k = 3, d) : m;                                                    \
                yr[i] = m;                                                                                    \
                kr[i] = k;                                                                                    \
            }                                                                                                 \
            for (int64_t i = 0; code && i < n; i++) code[j0 * OW + i] = (uint8_t)kr[i];                       \
            for (int64_t j = j0; idx && j < j1; j++) {                                                        \
                int64_t *ir = idx + j * OW;                                                                   \
                const int32_t *kj = kr + (j - j0) * OW;                                                       \
                const int64_t base = 2 * (j % OH) * W;                                                        \
                for (int64_t ow = 0; ow < OW; ow++) ir[ow] = base + 2 * ow + (kj[ow] & 1) + (kj[ow] >> 1) * W; \
            }                                                                                                 \
        }                                                                                                     \
    }                                                                                                         \
    /* max_fwd's windows a row of outputs at a time, for a stride of 1 along the row: for each row of the  \
     * windows, then each tap kw, the outputs whose column ow·sw - pw + kw·dw lies in x take the compare   \
     * (v > m or v NaN: m = v, best = its place) as selects over the row, which vectorise; each output    \
     * still sees its window's elements in row order from m = -inf and its first place, so the scan's     \
     * choice (max_pool2d [2, 4, 16, 32] with kernel (3, 2), stride (2, 1), padding 1, dilation (1, 2):     \
     * the branch an element was 15.7 µs against PyTorch's 14.2, session 20).  False: not taken. */        \
    AG_VEC_CLONES_512 static bool max_rows_##SUF(const pool_geom *g, const T *x, T *y, int64_t *idx, int64_t p0, \
                                                 int64_t p1) {                                              \
        enum { CH = 256 };                                                                                    \
        if (g->sw != 1) return false;                                                                         \
        const int64_t W = g->W, OW = g->OW, pw = g->pw, dw = g->dw;                                           \
        T m[CH];                                                                                              \
        int64_t b[CH];                                                                                        \
        for (int64_t p = p0; p < p1; p++)                                                                     \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                                          \
                int64_t h0 = oh * g->sh - g->ph, h1 = h0 + (g->KH - 1) * g->dh + 1;                           \
                if (h1 > g->H) h1 = g->H;                                                                     \
                h0 = first_inside(h0, g->dh);                                                                 \
                const T *xp = x + p * g->H * W;                                                               \
                const int64_t o = (p * g->OH + oh) * OW;                                                      \
                for (int64_t o0 = 0; o0 < OW; o0 += CH) {                                                     \
                    const int64_t o1 = OW - o0 > CH ? o0 + CH : OW;                                           \
                    for (int64_t ow = o0; ow < o1; ow++)                                                      \
                        m[ow - o0] = -(T)INFINITY, b[ow - o0] = h0 * W + first_inside(ow - pw, dw);           \
                    for (int64_t ih = h0; ih < h1; ih += g->dh) {                                             \
                        const T *r = xp + ih * W;                                                             \
                        for (int64_t kw = 0; kw < g->KW; kw++) {                                              \
                            const int64_t off = kw * dw - pw; /* column ow + off */                           \
                            int64_t lo = -off > o0 ? -off : o0, hi = W - off < o1 ? W - off : o1;             \
                            const int64_t col = o0 + off; /* output j = ow - o0 reads column j + col */       \
                            for (int64_t j = lo - o0; j < hi - o0; j++) {                                     \
                                const T v = r[j + col];                                                       \
                                const bool c = (v > m[j]) | (v != v);                                         \
                                m[j] = c ? v : m[j];                                                          \
                                b[j] = c ? ih * W + j + col : b[j];                                           \
                            }                                                                                 \
                        }                                                                                     \
                    }                                                                                         \
                    for (int64_t ow = o0; ow < o1; ow++) {                                                    \
                        y[o + ow] = m[ow - o0];                                                               \
                        if (idx) idx[o + ow] = b[ow - o0];                                                    \
                    }                                                                                         \
                }                                                                                             \
            }                                                                                                 \
        return true;                                                                                          \
    }                                                                                                         \
    /* (code, the 2 x 2 path's window choices, is NULL unless g is_2x2) */                                   \
    static void max_fwd_##SUF(const pool_geom *g, const T *x, T *y, int64_t *idx, uint8_t *code, int64_t p0,  \
                              int64_t p1) {                                                                   \
        if (is_2x2(g)) {                                                                                      \
            max_fwd_2x2_##SUF(g, x, y, idx, code, p0, p1);                                                    \
            return;                                                                                           \
        }                                                                                                     \
        if (max_rows_##SUF(g, x, y, idx, p0, p1)) return;                                                    \
        for (int64_t p = p0; p < p1; p++)                                                                     \
            for (int64_t oh = 0; oh < g->OH; oh++)                                                            \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                                      \
                    int64_t h0 = oh * g->sh - g->ph, w0 = ow * g->sw - g->pw;                                 \
                    int64_t h1 = h0 + (g->KH - 1) * g->dh + 1, w1 = w0 + (g->KW - 1) * g->dw + 1;             \
                    if (h1 > g->H) h1 = g->H;                                                                 \
                    if (w1 > g->W) w1 = g->W;                                                                 \
                    h0 = first_inside(h0, g->dh), w0 = first_inside(w0, g->dw);                               \
                    const T *xp = x + p * g->H * g->W;                                                        \
                    int64_t best = h0 * g->W + w0;                                                            \
                    T m = -(T)INFINITY;                                                                       \
                    for (int64_t ih = h0; ih < h1; ih += g->dh)                                               \
                        for (int64_t iw = w0; iw < w1; iw += g->dw) {                                         \
                            const T v = xp[ih * g->W + iw];                                                   \
                            if (v > m || isnan(v)) m = v, best = ih * g->W + iw;                              \
                        }                                                                                     \
                    const int64_t o = (p * g->OH + oh) * g->OW + ow;                                          \
                    y[o] = m;                                                                                 \
                    if (idx) idx[o] = best;                                                                   \
                }                                                                                             \
    }                                                                                                         \
    /* dx[idx] += dy, zeros elsewhere: each plane of dx zeroed right before its adds, so that they find it in \
     * the core's cache and the threads zero their own planes (cnn_fashion's pool1: 12.8 MB of dx) */         \
    static void max_bwd_##SUF(const pool_geom *g, const int64_t *idx, const T *dy, T *dx, int64_t p0, int64_t p1) { \
        const int64_t HW = g->H * g->W, OHW = g->OH * g->OW;                                                  \
        for (int64_t p = p0; p < p1; p++) {                                                                   \
            memset(dx + p * HW, 0, sizeof(T) * (size_t)HW);                                                   \
            for (int64_t o = 0; o < OHW; o++) {                                                               \
                const int64_t i = idx[p * OHW + o];                                                           \
                if (i >= 0 && i < HW) dx[p * HW + i] += dy[p * OHW + o];                                      \
            }                                                                                                 \
        }                                                                                                     \
    }                                                                                                         \
    /* max_bwd of 2 x 2 windows at stride 2 from their choices (max_fwd_2x2's code): each element of dx is   \
     * its window's dy where chosen (0 + dy, max_bwd's add: -0 gives +0), else 0, written row by row with   \
     * no zeroing pass and no int64 index read (cnn_fashion's pool1: 12.8 MB of dx, 0.8 MB of choices      \
     * where the indices were 6.4 MB); the rows and columns no window covers are 0 */                     \
    AG_VEC_CLONES static void max_bwd_2x2_##SUF(const pool_geom *g, const uint8_t *code, const T *dy, T *dx,   \
                                                int64_t p0, int64_t p1) {                                  \
        const int64_t H = g->H, W = g->W, OW = g->OW, OH = g->OH, rows = MAX2X2_OW / OW;                      \
        if (OW < MAX2X2_NARROW) { /* each plane zeroed, then dy put at the choices */                         \
            for (int64_t p = p0; p < p1; p++) {                                                               \
                T *dp = dx + p * H * W;                                                                       \
                memset(dp, 0, sizeof(T) * (size_t)(H * W));                                                   \
                for (int64_t oh = 0; oh < OH; oh++)                                                           \
                    for (int64_t ow = 0; ow < OW; ow++) {                                                     \
                        const int64_t o = (p * OH + oh) * OW + ow;                                            \
                        dp[(2 * oh + (code[o] >> 1)) * W + 2 * ow + (code[o] & 1)] = (T)0 + dy[o];            \
                    }                                                                                         \
            }                                                                                                 \
            return;                                                                                           \
        }                                                                                                     \
        T e0[MAX2X2_OW], o0[MAX2X2_OW], e1[MAX2X2_OW], o1[MAX2X2_OW];                                         \
        for (int64_t j0 = p0 * OH; j0 < p1 * OH; j0 += rows) {                                                \
            const int64_t j1 = j0 + rows < p1 * OH ? j0 + rows : p1 * OH, n = (j1 - j0) * OW;                  \
            const uint8_t *restrict k = code + j0 * OW;                                                       \
            const T *restrict d = dy + j0 * OW;                                                               \
            for (int64_t i = 0; i < n; i++) { /* masks over a chunk of rows, which vectorise (gcc 12 made    \
                                                 branches of selects on the bytes) */                         \
                const T v = (T)0 + d[i];                                                                      \
                U b, m[4];                                                                                    \
                memcpy(&b, &v, sizeof b);                                                                     \
                for (int q = 0; q < 4; q++) m[q] = b & (U)-(U)(k[i] == q);                                    \
                memcpy(&e0[i], &m[0], sizeof b), memcpy(&o0[i], &m[1], sizeof b);                             \
                memcpy(&e1[i], &m[2], sizeof b), memcpy(&o1[i], &m[3], sizeof b);                             \
            }                                                                                                 \
            for (int64_t j = j0, p = j0 / OH, oh = j0 % OH; j < j1; j++, oh = oh + 1 < OH ? oh + 1 : 0, p += !oh) { \
                const int64_t c = (j - j0) * OW;                                                              \
                T *restrict r0 = dx + (p * H + 2 * oh) * W, *restrict r1 = r0 + W;                            \
                for (int64_t ow = 0; ow < OW; ow++)                                                           \
                    r0[2 * ow] = e0[c + ow], r0[2 * ow + 1] = o0[c + ow], r1[2 * ow] = e1[c + ow],             \
                    r1[2 * ow + 1] = o1[c + ow];                                                              \
                for (int64_t w = 2 * OW; w < W; w++) r0[w] = r1[w] = 0;                                       \
                if (oh == OH - 1 && H > 2 * OH) /* the rows no window covers */                               \
                    memset(r1 + W, 0, sizeof(T) * (size_t)((H - 2 * OH) * W));                                \
            }                                                                                                 \
        }                                                                                                     \
    }                                                                                                         \
    /* y = Σ window / divisor, or, backward (dy given), dx[window] += dy / divisor */                        \
    static void avg_##SUF(const pool_geom *g, const T *x, T *y, const T *dy, T *dx) {                        \
        for (int64_t p = 0; p < planes_walked(g); p++)                                                                \
            for (int64_t oh = 0; oh < g->OH; oh++)                                                            \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                                      \
                    int64_t h0 = oh * g->sh - g->ph, w0 = ow * g->sw - g->pw;                                 \
                    int64_t h1 = h0 + g->KH, w1 = w0 + g->KW;                                                 \
                    if (h1 > g->H + g->ph) h1 = g->H + g->ph;                                                 \
                    if (w1 > g->W + g->pw) w1 = g->W + g->pw;                                                 \
                    int64_t size = (h1 - h0) * (w1 - w0);                                                     \
                    if (h0 < 0) h0 = 0;                                                                       \
                    if (w0 < 0) w0 = 0;                                                                       \
                    if (h1 > g->H) h1 = g->H;                                                                 \
                    if (w1 > g->W) w1 = g->W;                                                                 \
                    const int64_t o = (p * g->OH + oh) * g->OW + ow, base = p * g->H * g->W;                  \
                    if (h0 >= h1 || w0 >= w1) {                                                               \
                        if (y) y[o] = 0;                                                                      \
                        continue;                                                                             \
                    }                                                                                         \
                    if (g->exclude_pad) size = (h1 - h0) * (w1 - w0);                                         \
                    if (dy) {                                                                                 \
                        const T gv = (T)((double)dy[o] / (double)size);                                       \
                        for (int64_t ih = h0; ih < h1; ih++)                                                  \
                            for (int64_t iw = w0; iw < w1; iw++) dx[base + ih * g->W + iw] += gv;             \
                    } else {                                                                                  \
                        double s = 0;                                                                         \
                        for (int64_t ih = h0; ih < h1; ih++)                                                  \
                            for (int64_t iw = w0; iw < w1; iw++) s += x[base + ih * g->W + iw];               \
                        y[o] = (T)(s / (double)size);                                                         \
                    }                                                                                         \
                }                                                                                             \
    }                                                                                                         \
    /* y[i, j] = max over rows [⌊iH/OH⌋, ⌈(i+1)H/OH⌉) and the columns alike (NaN wins); idx = its h·W + w */   \
    static void adaptive_max_##SUF(const pool_geom *g, const T *x, T *y, int64_t *idx) {                    \
        for (int64_t p = 0; p < planes_walked(g); p++)                                                        \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                                          \
                const int64_t h0 = oh * g->H / g->OH, h1 = ag__ceil_div((oh + 1) * g->H, g->OH);              \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                                      \
                    const int64_t w0 = ow * g->W / g->OW, w1 = ag__ceil_div((ow + 1) * g->W, g->OW);          \
                    const T *xp = x + p * g->H * g->W;                                                        \
                    int64_t best = h0 * g->W + w0;                                                            \
                    T m = -(T)INFINITY;                                                                       \
                    if (LANES_ARGMAX(T, xp, g->W, h0, h1, w0, w1, &best))                                     \
                        m = xp[best];                                                                         \
                    else                                                                                      \
                        for (int64_t ih = h0; ih < h1; ih++)                                                  \
                            for (int64_t iw = w0; iw < w1; iw++) {                                            \
                                const T v = xp[ih * g->W + iw];                                               \
                                if (v > m || isnan(v)) m = v, best = ih * g->W + iw;                          \
                            }                                                                                 \
                    const int64_t o = (p * g->OH + oh) * g->OW + ow;                                          \
                    y[o] = m;                                                                                 \
                    if (idx) idx[o] = best;                                                                   \
                }                                                                                             \
            }                                                                                                 \
    }                                                                                                         \
    /* y[i, j] = mean of rows [⌊iH/OH⌋, ⌈(i+1)H/OH⌉) and the columns alike; backward spreads dy evenly */      \
    static void adaptive_##SUF(const pool_geom *g, const T *x, T *y, const T *dy, T *dx) {                   \
        for (int64_t p = 0; p < planes_walked(g); p++)                                                                \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                                          \
                const int64_t h0 = oh * g->H / g->OH, h1 = ag__ceil_div((oh + 1) * g->H, g->OH);              \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                                      \
                    const int64_t w0 = ow * g->W / g->OW, w1 = ag__ceil_div((ow + 1) * g->W, g->OW);          \
                    const int64_t o = (p * g->OH + oh) * g->OW + ow, base = p * g->H * g->W;                  \
                    const double size = (double)((h1 - h0) * (w1 - w0));                                      \
                    if (dy) {                                                                                 \
                        const T gv = (T)((double)dy[o] / size);                                               \
                        for (int64_t ih = h0; ih < h1; ih++)                                                  \
                            for (int64_t iw = w0; iw < w1; iw++) dx[base + ih * g->W + iw] += gv;             \
                    } else {                                                                                  \
                        y[o] = (T)(window_sum_##SUF(x + base, g->W, h0, h1, w0, w1) / size);                  \
                    }                                                                                         \
                }                                                                                             \
            }                                                                                                 \
    }
POOL_KERNELS(f32, float, uint32_t)
POOL_KERNELS(f64, double, uint64_t)

/* Runs a max pooling kernel over planes [p0, p1) (PLANES_BODY), the planes split over threads when
 * the windows hold many elements (each plane's outputs and gradient are its own).  Both dtypes. */
#define PLANES_SPLIT(g, work, PLANES_BODY)                                                                     \
    do {                                                                                                      \
        const int64_t P_ = planes_walked(g);                                                                  \
        int nt_ = ag__threads_for(work);                                                                      \
        if (nt_ > P_) nt_ = P_ > 1 ? (int)P_ : 1;                                                             \
        if (nt_ <= 1) {                                                                                       \
            const int64_t p0 = 0, p1 = P_;                                                                    \
            PLANES_BODY;                                                                                      \
        } else {                                                                                              \
            _Pragma("omp parallel for num_threads(nt_) schedule(static)") for (int t_ = 0; t_ < nt_; t_++) {  \
                const int64_t p0 = ag__share_start(P_, t_, nt_), p1 = ag__share_start(P_, t_ + 1, nt_);      \
                PLANES_BODY;                                                                                  \
            }                                                                                                 \
        }                                                                                                     \
    } while (0)

/* The elements a max pooling reads (its outputs times the kernel's size), saturated: it only picks threads. */
static int64_t max_work(const pool_geom *g) {
    int64_t n;
    if (ag__mul_overflow(planes_walked(g), g->OH * g->OW, &n) || ag__mul_overflow(n, g->KH * g->KW, &n)) return INT64_MAX;
    return n;
}

/* ---- geometry ------------------------------------------------------------------------------------------ */
/* Checks that x has nsp + 1 or nsp + 2 dims and fills P, H, W (a 1-d input has height 1). */
static ag_status planes(const char *op, const ag_tensor *x, int nsp, pool_geom *g) {
    char s[AG_SHAPE_STR];
    if (x->ndim != nsp + 1 && x->ndim != nsp + 2)
        return ag__fail(AG_ERR_SHAPE, "%s: input %s must have %d dims (batched) or %d (unbatched)", op,
                        ag__tshape(s, x), nsp + 2, nsp + 1);
    g->P = ag__numel(x->ndim - nsp, x->shape);
    g->H = nsp == 2 ? x->shape[x->ndim - 2] : 1;
    g->W = x->shape[x->ndim - 1];
    return AG_OK;
}

/* PyTorch's pooling_output_shape: ⌊(in + 2·pad - d·(k - 1) - 1 (+ s - 1 with ceil)) / s⌋ + 1, less one when
 * ceil mode would start the last window beyond the input and its left padding.  false: overflow. */
static bool out_size(int64_t in, int64_t k, int64_t pad, int64_t s, int64_t d, bool ceil, int64_t *out) {
    int64_t span, n;
    if (ag__mul_overflow(d, k - 1, &span) || ag__add_overflow(in, 2 * pad, &n) || ag__add_overflow(n, -span - 1, &n) ||
        ag__add_overflow(n, ceil ? s - 1 : 0, &n))
        return false;
    int64_t q = n >= 0 ? n / s : -ag__ceil_div(-n, s); /* rounded toward -∞ */
    *out = q + 1;
    if (ceil && *out > 0 && (*out - 1) * s >= in + pad) (*out)--;
    return true;
}

/* Checks the options of op (avg: no dilation) for x and fills g.  nsp: 1 or 2 spatial dims. */
static ag_status pool_geometry(const char *op, const ag_tensor *x, const ag_pool_opts *o, bool avg, int nsp,
                               pool_geom *g) {
    char s[AG_SHAPE_STR];
    if (!o) return ag__fail(AG_ERR_ARG, "%s: options with the kernel size are required", op);
    ag_status st = planes(op, x, nsp, g);
    if (st) return st;
    int64_t k[2] = {1, 1}, str[2] = {1, 1}, pad[2] = {0, 0}, dil[2] = {1, 1}, in[2] = {g->H, g->W}, out[2] = {1, 1};
    for (int i = 0; i < nsp; i++) {
        const int t = 2 - nsp + i;
        if (o->kernel[i] < 1 || o->stride[i] < 0 || o->padding[i] < 0 || o->dilation[i] < 0)
            return ag__fail(AG_ERR_ARG, "%s: kernel %lld must be positive and stride %lld, padding %lld, dilation %lld "
                            "not negative (entry %d)", op, (long long)o->kernel[i], (long long)o->stride[i],
                            (long long)o->padding[i], (long long)o->dilation[i], i);
        k[t] = o->kernel[i], str[t] = o->stride[i] ? o->stride[i] : k[t], pad[t] = o->padding[i];
        dil[t] = o->dilation[i] ? o->dilation[i] : 1;
        if (avg && dil[t] != 1)
            return ag__fail(AG_ERR_ARG, "%s: average pooling has no dilation (got %lld)", op, (long long)dil[t]);
        if (pad[t] > k[t] / 2)
            return ag__fail(AG_ERR_ARG, "%s: padding %lld must be at most half the kernel size %lld", op,
                            (long long)pad[t], (long long)k[t]);
        if (!out_size(in[t], k[t], pad[t], str[t], dil[t], o->ceil_mode, &out[t]))
            return ag__fail(AG_ERR_ARG, "%s: kernel %lld with dilation %lld overflows", op, (long long)k[t],
                            (long long)dil[t]);
    }
    if (out[0] <= 0 || out[1] <= 0)
        return ag__fail(AG_ERR_SHAPE, "%s: input %s is too small for the kernel: output size %lld x %lld", op,
                        ag__tshape(s, x), (long long)out[0], (long long)out[1]);
    *g = (pool_geom){g->P, g->H, g->W, k[0], k[1], str[0], str[1], pad[0], pad[1], dil[0], dil[1], out[0], out[1],
                     o->exclude_pad};
    return AG_OK;
}

/* y's shape: x's with the spatial dims replaced by the output's. */
static void output_shape(const ag_tensor *x, const pool_geom *g, int nsp, int64_t *shape) {
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    if (nsp == 2) shape[x->ndim - 2] = g->OH;
    shape[x->ndim - 1] = g->OW;
}

/* A new tensor of y's shape (owned by the scope). */
static ag_tensor *new_output(const char *op, const ag_tensor *x, const pool_geom *g, int nsp) {
    int64_t shape[AG_MAX_DIMS];
    output_shape(x, g, nsp, shape);
    if (ag__check_alloc(op, x->ndim, shape, x->dtype)) return NULL;
    return ag__new(x->dtype, x->ndim, shape);
}

/* The geometry a node keeps: attr.i = P H W KH KW sh sw ph pw dh dw OH OW exclude_pad (a 1-d node's x has
 * no height dim, so the node cannot read the planes from x's shape). */
static void save_geometry(ag_tensor *y, const pool_geom *g) {
    const int64_t v[14] = {g->P,  g->H,  g->W,  g->KH, g->KW, g->sh, g->sw,
                           g->ph, g->pw, g->dh, g->dw, g->OH, g->OW, g->exclude_pad};
    memcpy(y->attr.i, v, sizeof v);
}

static pool_geom saved_geometry(const ag_tensor *out) {
    const int64_t *a = out->attr.i;
    return (pool_geom){a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13] != 0};
}

/* ---- max_pool2d ------------------------------------------------------------------------------------------ */
/* t (of x's or y's shape) as planes [P, n] of n elements each. */
static ag_tensor *as_planes(ag_tensor *t, int64_t P, int64_t n) { return ag_reshape(t, AG_SHAPE(P, n)); }

/* The node's argmax indices as planes [P, OH·OW] of h·W + w (owned by the scope): the saved int64 indices, or
 * made from the 2 x 2 path's window choices (a byte each: max_windows). */
static ag_tensor *saved_indices(const ag_tensor *out) {
    const pool_geom g = saved_geometry(out);
    if (out->saved->dtype != AG_U8) return as_planes(out->saved, g.P, g.OH * g.OW);
    ag_tensor *idx = ag__new(AG_I64, 2, (int64_t[]){g.P, g.OH * g.OW});
    if (!idx) return NULL;
    const uint8_t *k = (const uint8_t *)ag__ptr(out->saved);
    int64_t *ip = (int64_t *)ag__ptr(idx);
    for (int64_t j = 0; j < g.P * g.OH; j++)
        for (int64_t ow = 0; ow < g.OW; ow++) {
            const int64_t o = j * g.OW + ow;
            ip[o] = 2 * (j % g.OH) * g.W + 2 * ow + (k[o] & 1) + (k[o] >> 1) * g.W;
        }
    return idx;
}

/* dx = zeros with dy added at each window's argmax (scatter_add over each plane: windows may share it) */
static ag_status max_pool2d_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0];
    const pool_geom g = saved_geometry(out);
    ag_tensor *dx = ag_scatter_add(ag_zeros(AG_SHAPE(g.P, g.H * g.W), x->dtype), 1, saved_indices(out),
                                   as_planes(gout, g.P, g.OH * g.OW));
    return (gin[0] = dx ? ag_reshape(dx, ag_shape_of(x)) : NULL) ? AG_OK : ag_last_status();
}

/* dy = dx at each window's argmax (gather over each plane) */
static ag_tensor *max_pool2d_jvp(ag_tensor *out, ag_tensor *const *tin) {
    const pool_geom g = saved_geometry(out);
    return ag__jvp_shaped(ag_gather(as_planes(tin[0], g.P, g.H * g.W), 1, saved_indices(out)), out);
}

static ag_status max_pool2d_backward(ag_tensor *out, ag_tensor *gout);
/* y = max over each window;  dx[argmax] += dy */
static const ag_op op_max_pool2d = {.name = "max_pool2d", .grad_fn = "MaxPool2DWithIndicesBackward0",
                                    .backward = max_pool2d_backward,
                                    .math = "y[p,i,j] = max_{window (i,j)} x[p];  "
                                            "dx[p, argmax of window (i,j)] += dy[p,i,j]",
                                    .backward_graph = max_pool2d_backward_graph, .jvp = max_pool2d_jvp,
                                    .tangent = "ẏ = ẋ at each window's argmax"};

/* Max pooling of x over the windows of geometry g (nsp spatial dims, 1 or 2; adaptive: the adaptive
 * windows), recorded as row. */
static ag_tensor *max_windows(const char *op, const ag_op *row, ag_tensor *x, const pool_geom *pg, bool adaptive,
                              ag_tensor **indices, int nsp) {
    const pool_geom g = *pg;
    ag_tensor *y = new_output(op, x, &g, nsp);
    const bool record = ag__needs_grad1(x);
    ag_tensor *xc = y ? ag__contig_or_copy(x) : NULL;
    ag_tensor *idx = xc && indices ? ag__new(AG_I64, y->ndim, y->shape) : NULL;
    /* the node keeps the 2 x 2 path's window choices, a byte each, unless the caller wants the indices too */
    const bool codes = record && !indices && !adaptive && is_2x2(&g);
    ag_tensor *saved = xc && record ? ag__new_unowned(codes ? AG_U8 : AG_I64, y->ndim, y->shape, false) : NULL;
    if (!xc || (indices && !idx) || (record && !saved)) {
        ag_release(xc);
        ag_release(saved);
        ag__discard(idx);
        ag__discard(y);
        return NULL;
    }
    int64_t *ip = codes ? NULL : saved ? (int64_t *)ag__ptr(saved) : idx ? (int64_t *)ag__ptr(idx) : NULL;
    uint8_t *code = codes ? (uint8_t *)ag__ptr(saved) : NULL;
    if (adaptive && x->dtype == AG_F64) adaptive_max_f64(&g, (const double *)ag__ptr(xc), (double *)ag__ptr(y), ip);
    else if (adaptive) adaptive_max_f32(&g, (const float *)ag__ptr(xc), (float *)ag__ptr(y), ip);
    else if (x->dtype == AG_F64)
        PLANES_SPLIT(&g, max_work(&g),
                     max_fwd_f64(&g, (const double *)ag__ptr(xc), (double *)ag__ptr(y), ip, code, p0, p1));
    else PLANES_SPLIT(&g, max_work(&g), max_fwd_f32(&g, (const float *)ag__ptr(xc), (float *)ag__ptr(y), ip, code, p0, p1));
    ag_release(xc);
    if (idx && saved) memcpy(ag__ptr(idx), ag__ptr(saved), sizeof(int64_t) * (size_t)ag_numel(y));
    if (record) {
        if (!ag__record(y, row, &x, 1)) {
            ag_release(saved);
            ag__discard(idx);
            return NULL;
        }
        y->saved = saved; /* the node owns the indices */
        save_geometry(y, &g);
    }
    if (indices) *indices = idx;
    return y;
}

/* max pooling of x (nsp spatial dims, 1 or 2), named op. */
static ag_tensor *max_pool(const char *op, ag_tensor *x, const ag_pool_opts *o, ag_tensor **indices, int nsp) {
    if (indices) *indices = NULL;
    if (!x || ag__check_float(op, x, NULL)) return NULL;
    pool_geom g = {0};
    if (pool_geometry(op, x, o, false, nsp, &g)) return NULL;
    return max_windows(op, &op_max_pool2d, x, &g, false, indices, nsp);
}

/* dx[p, idx] += dy (also adaptive_max_pool2d's adjoint) */
static ag_status max_pool2d_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    const pool_geom g = saved_geometry(out);
    /* zeroed here only when no plane is walked (an empty output): max_bwd zeroes the planes it walks */
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, planes_walked(&g) == 0);
    if (!gx) return AG_ERR_NOMEM;
    const int64_t work = ag_numel(gout); /* one add per output */
    if (out->saved->dtype == AG_U8) { /* the 2 x 2 path's window choices */
        const uint8_t *code = (const uint8_t *)ag__ptr(out->saved);
        if (x->dtype == AG_F64)
            PLANES_SPLIT(&g, work, max_bwd_2x2_f64(&g, code, (const double *)ag__ptr(gout), (double *)ag__ptr(gx), p0, p1));
        else PLANES_SPLIT(&g, work, max_bwd_2x2_f32(&g, code, (const float *)ag__ptr(gout), (float *)ag__ptr(gx), p0, p1));
        return ag__accumulate(x, gx);
    }
    const int64_t *idx = (const int64_t *)ag__ptr(out->saved);
    if (x->dtype == AG_F64)
        PLANES_SPLIT(&g, work, max_bwd_f64(&g, idx, (const double *)ag__ptr(gout), (double *)ag__ptr(gx), p0, p1));
    else PLANES_SPLIT(&g, work, max_bwd_f32(&g, idx, (const float *)ag__ptr(gout), (float *)ag__ptr(gx), p0, p1));
    return ag__accumulate(x, gx);
}

ag_tensor *ag_max_pool2d(ag_tensor *x, const ag_pool_opts *o, ag_tensor **indices) {
    AG_CHECK_HANDLES(NULL, "max_pool2d", x);
    return max_pool("max_pool2d", x, o, indices, 2);
}

/* ---- average pooling and its adjoint --------------------------------------------------------------------------
 * avg_pool2d and adaptive_avg_pool2d are linear; their adjoint spreads each element of dy evenly over its window.
 * That adjoint is an op of its own (avg_pool2d_backward, adaptive_avg_pool2d_backward, PyTorch's aten ops of those
 * names) whose adjoint is the pooling again, so each pair differentiates to any order; the tangent of each is the
 * op itself on the tangent.  All four share the kernels (avg_*, adaptive_*) and the node's geometry. */
static ag_status avg_windows_backward(ag_tensor *out, ag_tensor *gout);
static ag_status avg_spread_backward(ag_tensor *out, ag_tensor *gout);
static ag_status avg_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *avg_jvp(ag_tensor *out, ag_tensor *const *tin);

/* y = Σ window / divisor;  dx[window] += dy / divisor */
static const ag_op op_avg_pool2d = {
    .name = "avg_pool2d", .grad_fn = "AvgPool2DBackward0", .backward = avg_windows_backward,
    .math = "y[p,i,j] = Σ_{window (i,j)} x[p] / divisor (window clipped to the padded input, "
            "or to x with exclude_pad);  dx[p, window (i,j)] += dy[p,i,j] / divisor (the op avg_pool2d_backward)",
    .backward_graph = avg_backward_graph, .jvp = avg_jvp,
    .tangent = "ẏ = avg_pool2d(ẋ)"};
/* y = mean over adaptive window;  dx[window] += dy / |window| */
static const ag_op op_adaptive_avg_pool2d = {
    .name = "adaptive_avg_pool2d", .grad_fn = "AdaptiveAvgPool2DBackward0", .backward = avg_windows_backward,
    .math = "y[p,i,j] = mean of x[p] over rows [⌊i·H/OH⌋, ⌈(i+1)·H/OH⌉) × columns alike;  "
            "dx[p, window (i,j)] += dy[p,i,j] / |window| (the op adaptive_avg_pool2d_backward)",
    .backward_graph = avg_backward_graph, .jvp = avg_jvp,
    .tangent = "ẏ = adaptive_avg_pool2d(ẋ)"};
/* y[window] += g / divisor;  dg = avg_pool2d(dy) */
static const ag_op op_avg_pool2d_backward = {.name = "avg_pool2d_backward", .grad_fn = "AvgPool2DBackwardBackward0",
                                             .backward = avg_spread_backward,
                                             .math = "y = 0, y[p, window (i,j)] += g[p,i,j] / divisor (the adjoint of "
                                                     "avg_pool2d);  dg = avg_pool2d(dy)",
                                             .backward_graph = avg_backward_graph, .jvp = avg_jvp,
                                             .tangent = "ẏ = avg_pool2d_backward(ġ)"};
/* y[window] += g / |window|;  dg = adaptive_avg_pool2d(dy) */
static const ag_op op_adaptive_avg_pool2d_backward = {
    .name = "adaptive_avg_pool2d_backward", .grad_fn = "AdaptiveAvgPool2DBackwardBackward0",
    .backward = avg_spread_backward,
    .math = "y = 0, y[p, window (i,j)] += g[p,i,j] / |window| (the adjoint of adaptive_avg_pool2d);  "
            "dg = adaptive_avg_pool2d(dy)",
    .backward_graph = avg_backward_graph, .jvp = avg_jvp,
    .tangent = "ẏ = adaptive_avg_pool2d_backward(ġ)"};

static bool is_adaptive(const ag_op *row) { return row == &op_adaptive_avg_pool2d || row == &op_adaptive_avg_pool2d_backward; }

/* The average pooling of x over the windows of g into a new tensor of shape (ndim, shape), recorded as row. */
static ag_tensor *avg_windows(const ag_op *row, ag_tensor *x, int ndim, const int64_t *shape, const pool_geom *g) {
    ag_tensor *y = ag__new(x->dtype, ndim, shape);
    ag_tensor *xc = y ? ag__contig_or_copy(x) : NULL;
    if (!xc) {
        ag__discard(y);
        return NULL;
    }
    if (is_adaptive(row) && x->dtype == AG_F64) adaptive_f64(g, (const double *)ag__ptr(xc), (double *)ag__ptr(y), NULL, NULL);
    else if (is_adaptive(row)) adaptive_f32(g, (const float *)ag__ptr(xc), (float *)ag__ptr(y), NULL, NULL);
    else if (x->dtype == AG_F64) avg_f64(g, (const double *)ag__ptr(xc), (double *)ag__ptr(y), NULL, NULL);
    else avg_f32(g, (const float *)ag__ptr(xc), (float *)ag__ptr(y), NULL, NULL);
    ag_release(xc);
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, row, &x, 1)) return NULL;
        save_geometry(y, g);
    }
    return ag__check_finite(y, row->name);
}

/* dy's elements spread evenly over their windows of g (zeros elsewhere) into dx, contiguous, zeroed. */
static void spread(const ag_op *row, const pool_geom *g, ag_tensor *dyc, ag_tensor *dx) {
    if (is_adaptive(row) && dx->dtype == AG_F64) adaptive_f64(g, NULL, NULL, (const double *)ag__ptr(dyc), (double *)ag__ptr(dx));
    else if (is_adaptive(row)) adaptive_f32(g, NULL, NULL, (const float *)ag__ptr(dyc), (float *)ag__ptr(dx));
    else if (dx->dtype == AG_F64) avg_f64(g, NULL, NULL, (const double *)ag__ptr(dyc), (double *)ag__ptr(dx));
    else avg_f32(g, NULL, NULL, (const float *)ag__ptr(dyc), (float *)ag__ptr(dx));
}

/* The adjoint of a pooling over g as an op: dy spread over its windows into a new tensor of shape (ndim, shape),
 * recorded as row (avg_pool2d_backward or adaptive_avg_pool2d_backward). */
static ag_tensor *avg_spread(const ag_op *row, ag_tensor *dy, int ndim, const int64_t *shape, const pool_geom *g) {
    ag_tensor *dx = ag__new_zeros(dy->dtype, ndim, shape);
    ag_tensor *dyc = dx ? ag__contig_or_copy(dy) : NULL;
    if (!dyc) {
        ag__discard(dx);
        return NULL;
    }
    spread(row, g, dyc, dx);
    ag_release(dyc);
    if (ag__needs_grad1(dy)) {
        if (!ag__record(dx, row, &dy, 1)) return NULL;
        save_geometry(dx, g);
    }
    return ag__check_finite(dx, row->name);
}

/* The partner of row: the pooling's adjoint op, or the adjoint's pooling. */
static const ag_op *partner(const ag_op *row) {
    return row == &op_avg_pool2d ? &op_avg_pool2d_backward
         : row == &op_avg_pool2d_backward ? &op_avg_pool2d
         : row == &op_adaptive_avg_pool2d ? &op_adaptive_avg_pool2d_backward
                                          : &op_adaptive_avg_pool2d;
}

/* dx = the partner op on dy: pooling <-> spreading (both linear) */
static ag_status avg_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    const pool_geom g = saved_geometry(out);
    const ag_op *p = partner(out->op);
    ag_tensor *x = out->in[0];
    gin[0] = p == &op_avg_pool2d || p == &op_adaptive_avg_pool2d ? avg_windows(p, gout, x->ndim, x->shape, &g)
                                                                  : avg_spread(p, gout, x->ndim, x->shape, &g);
    return gin[0] ? AG_OK : ag_last_status();
}

/* dy = the op itself on dx (linear) */
static ag_tensor *avg_jvp(ag_tensor *out, ag_tensor *const *tin) {
    const pool_geom g = saved_geometry(out);
    return out->op == &op_avg_pool2d || out->op == &op_adaptive_avg_pool2d
               ? avg_windows(out->op, tin[0], out->ndim, out->shape, &g)
               : avg_spread(out->op, tin[0], out->ndim, out->shape, &g);
}

/* dx[window] += dy / divisor (avg_pool2d and adaptive_avg_pool2d) */
static ag_status avg_windows_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    const pool_geom g = saved_geometry(out);
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, true);
    if (!gx) return AG_ERR_NOMEM;
    spread(out->op, &g, gout, gx);
    return ag__accumulate(x, gx);
}

/* dg = the pooling of dy (avg_pool2d_backward and adaptive_avg_pool2d_backward) */
static ag_status avg_spread_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *dy = out->in[0];
    const pool_geom g = saved_geometry(out);
    ag_tensor *gg = ag__new_unowned(dy->dtype, dy->ndim, dy->shape, false);
    if (!gg) return AG_ERR_NOMEM;
    if (is_adaptive(out->op) && dy->dtype == AG_F64) adaptive_f64(&g, (const double *)ag__ptr(gout), (double *)ag__ptr(gg), NULL, NULL);
    else if (is_adaptive(out->op)) adaptive_f32(&g, (const float *)ag__ptr(gout), (float *)ag__ptr(gg), NULL, NULL);
    else if (dy->dtype == AG_F64) avg_f64(&g, (const double *)ag__ptr(gout), (double *)ag__ptr(gg), NULL, NULL);
    else avg_f32(&g, (const float *)ag__ptr(gout), (float *)ag__ptr(gg), NULL, NULL);
    return ag__accumulate(dy, gg);
}

static ag_tensor *avg_pool(const char *op, ag_tensor *x, const ag_pool_opts *o, int nsp) {
    if (!x || ag__check_float(op, x, NULL)) return NULL;
    pool_geom g = {0};
    if (pool_geometry(op, x, o, true, nsp, &g)) return NULL;
    int64_t shape[AG_MAX_DIMS];
    output_shape(x, &g, nsp, shape);
    if (ag__check_alloc(op, x->ndim, shape, x->dtype)) return NULL;
    return avg_windows(&op_avg_pool2d, x, x->ndim, shape, &g);
}

ag_tensor *ag_avg_pool2d(ag_tensor *x, const ag_pool_opts *o) {
    AG_CHECK_HANDLES(NULL, "avg_pool2d", x);
    return avg_pool("avg_pool2d", x, o, 2);
}

/* Checks the output size of adaptive pooling op for x and fills g. */
static ag_status adaptive_geometry(const char *op, const ag_tensor *x, int64_t out_h, int64_t out_w, pool_geom *g) {
    char s[AG_SHAPE_STR];
    *g = (pool_geom){0};
    ag_status st = planes(op, x, 2, g);
    if (st) return st;
    int64_t prod;
    if (out_h < 0 || out_w < 0)
        return ag__fail(AG_ERR_ARG, "%s: negative output size %lld x %lld", op, (long long)out_h, (long long)out_w);
    if ((g->H == 0 || g->W == 0) && out_h != 0 && out_w != 0) /* PyTorch: planes need elements */
        return ag__fail(AG_ERR_SHAPE, "%s: input %s has an empty plane", op, ag__tshape(s, x));
    if (ag__mul_overflow(out_h, g->H, &prod) || ag__mul_overflow(out_w, g->W, &prod)) /* (i + 1)·H, i < out_h */
        return ag__fail(AG_ERR_ARG, "%s: output size %lld x %lld is too large for input %s", op, (long long)out_h,
                        (long long)out_w, ag__tshape(s, x));
    g->OH = out_h, g->OW = out_w;
    return AG_OK;
}

ag_tensor *ag_adaptive_avg_pool2d(ag_tensor *x, int64_t out_h, int64_t out_w) {
    AG_CHECK_HANDLES(NULL, "adaptive_avg_pool2d", x);
    if (!x || ag__check_float("adaptive_avg_pool2d", x, NULL)) return NULL;
    pool_geom g = {0};
    if (adaptive_geometry("adaptive_avg_pool2d", x, out_h, out_w, &g)) return NULL;
    int64_t shape[AG_MAX_DIMS];
    output_shape(x, &g, 2, shape);
    if (ag__check_alloc("adaptive_avg_pool2d", x->ndim, shape, x->dtype)) return NULL;
    return avg_windows(&op_adaptive_avg_pool2d, x, x->ndim, shape, &g);
}

/* A header holding only a shape, for the geometry checks of an input given by its shape (the caller checks
 * the shape first). */
static ag_tensor shape_header(ag_shape s) {
    ag_tensor t;
    memset(&t, 0, sizeof t);
    t.ndim = s.ndim;
    memcpy(t.shape, s.dim, sizeof(int64_t) * (size_t)s.ndim);
    return t;
}

/* Checks that dy has the shape of the output of geometry g for an input x (op names the adjoint). */
static ag_status check_grad_output(const char *op, const ag_tensor *dy, const ag_tensor *x, const pool_geom *g) {
    int64_t shape[AG_MAX_DIMS];
    output_shape(x, g, 2, shape);
    if (dy->ndim == x->ndim && memcmp(dy->shape, shape, sizeof(int64_t) * (size_t)x->ndim) == 0) return AG_OK;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR], s3[AG_SHAPE_STR];
    return ag__fail(AG_ERR_SHAPE, "%s: grad_output %s is not the pooling's output %s for an input of shape %s", op,
                    ag__tshape(s1, dy), ag__shape_str(s2, x->ndim, shape), ag__tshape(s3, x));
}

ag_tensor *ag_avg_pool2d_backward(ag_tensor *grad_output, ag_shape input_shape, const ag_pool_opts *o) {
    const char *op = "avg_pool2d_backward";
    AG_CHECK_HANDLES(NULL, op, grad_output);
    if (!grad_output || ag__check_float(op, grad_output, NULL)) return NULL;
    if (ag__check_alloc(op, input_shape.ndim, input_shape.dim, grad_output->dtype)) return NULL;
    const ag_tensor x = shape_header(input_shape);
    pool_geom g = {0};
    if (pool_geometry(op, &x, o, true, 2, &g) || check_grad_output(op, grad_output, &x, &g)) return NULL;
    return avg_spread(&op_avg_pool2d_backward, grad_output, x.ndim, x.shape, &g);
}

ag_tensor *ag_adaptive_avg_pool2d_backward(ag_tensor *grad_output, ag_shape input_shape) {
    const char *op = "adaptive_avg_pool2d_backward";
    AG_CHECK_HANDLES(NULL, op, grad_output);
    if (!grad_output || ag__check_float(op, grad_output, NULL)) return NULL;
    if (ag__check_alloc(op, input_shape.ndim, input_shape.dim, grad_output->dtype)) return NULL;
    const ag_tensor x = shape_header(input_shape);
    pool_geom g = {0};
    const int nd = grad_output->ndim;
    if (planes(op, &x, 2, &g)) return NULL;
    if (nd != x.ndim) {
        char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "%s: grad_output %s must have the %d dims of the input %s", op,
                             ag__tshape(s1, grad_output), x.ndim, ag__tshape(s2, &x));
    }
    if (adaptive_geometry(op, &x, grad_output->shape[nd - 2], grad_output->shape[nd - 1], &g) ||
        check_grad_output(op, grad_output, &x, &g))
        return NULL;
    return avg_spread(&op_adaptive_avg_pool2d_backward, grad_output, x.ndim, x.shape, &g);
}

/* ---- adaptive_max_pool2d --------------------------------------------------------------------------------- */
/* y = max over adaptive window;  dx[argmax] += dy */
static const ag_op op_adaptive_max_pool2d = {
    .name = "adaptive_max_pool2d", .grad_fn = "AdaptiveMaxPool2DBackward0", .backward = max_pool2d_backward,
    .math = "y[p,i,j] = max of x[p] over rows [⌊i·H/OH⌋, ⌈(i+1)·H/OH⌉) × columns alike;  "
            "dx[p, argmax of window (i,j)] += dy[p,i,j]",
    .backward_graph = max_pool2d_backward_graph, .jvp = max_pool2d_jvp,
    .tangent = "ẏ = ẋ at each window's argmax"};

ag_tensor *ag_adaptive_max_pool2d(ag_tensor *x, int64_t out_h, int64_t out_w, ag_tensor **indices) {
    AG_CHECK_HANDLES(NULL, "adaptive_max_pool2d", x);
    if (indices) *indices = NULL;
    if (!x || ag__check_float("adaptive_max_pool2d", x, NULL)) return NULL;
    pool_geom g = {0};
    if (adaptive_geometry("adaptive_max_pool2d", x, out_h, out_w, &g)) return NULL;
    return max_windows("adaptive_max_pool2d", &op_adaptive_max_pool2d, x, &g, true, indices, 2);
}

/* ---- max_unpool2d ---------------------------------------------------------------------------------------- */
static ag_status max_unpool2d_backward(ag_tensor *out, ag_tensor *gout);

/* The planes of a max_unpool2d node: P planes of n inputs (x) and m outputs (y). */
static void unpool_planes(const ag_tensor *out, int64_t *P, int64_t *n, int64_t *m) {
    const ag_tensor *x = out->in[0];
    const int nd = x->ndim;
    *P = ag__numel(nd - 2, x->shape), *n = x->shape[nd - 2] * x->shape[nd - 1];
    *m = out->shape[nd - 2] * out->shape[nd - 1];
}

/* dx = dy[idx] (gather over each plane) */
static ag_status max_unpool2d_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0];
    int64_t P, n, m;
    unpool_planes(out, &P, &n, &m);
    ag_tensor *dx = ag_gather(as_planes(gout, P, m), 1, as_planes(out->saved, P, n));
    return (gin[0] = dx ? ag_reshape(dx, ag_shape_of(x)) : NULL) ? AG_OK : ag_last_status();
}

/* dy = max_unpool2d(dx) at the same indices */
static ag_tensor *max_unpool2d_jvp(ag_tensor *out, ag_tensor *const *tin) {
    const int nd = out->ndim;
    return ag_max_unpool2d(tin[0], out->saved, NULL, out->shape[nd - 2], out->shape[nd - 1]);
}

/* y[idx] = x (zeros elsewhere);  dx = dy[idx] */
static const ag_op op_max_unpool2d = {.name = "max_unpool2d", .grad_fn = "MaxUnpool2DBackward0",
                                      .backward = max_unpool2d_backward,
                                      .math = "y[p, idx[p,i,j]] = x[p,i,j], zeros elsewhere;  "
                                              "dx[p,i,j] = dy[p, idx[p,i,j]]",
                                      .backward_graph = max_unpool2d_backward_graph, .jvp = max_unpool2d_jvp,
                                      .tangent = "ẏ = max_unpool2d(ẋ) at the same indices"};

/* Places (forward: dst[p, idx] = src) or gathers (adjoint: dst = src[p, idx]) over P planes of n inputs and
 * m outputs; the indices are checked by the forward. */
#define UNPOOL_KERNEL(SUF, T)                                                                                 \
    static void unpool_##SUF(int64_t P, int64_t n, int64_t m, const int64_t *idx, const T *src, T *dst,     \
                             bool forward) {                                                                  \
        for (int64_t p = 0; p < P; p++)                                                                       \
            for (int64_t i = 0; i < n; i++) {                                                                 \
                if (forward) dst[p * m + idx[p * n + i]] = src[p * n + i];                                    \
                else dst[p * n + i] = src[p * m + idx[p * n + i]];                                            \
            }                                                                                                 \
    }
UNPOOL_KERNEL(f32, float)
UNPOOL_KERNEL(f64, double)

ag_tensor *ag_max_unpool2d(ag_tensor *x, ag_tensor *indices, const ag_pool_opts *o, int64_t out_h, int64_t out_w) {
    AG_CHECK_HANDLES(NULL, "max_unpool2d", x, indices);
    if (!x || !indices || ag__check_float("max_unpool2d", x, NULL)) return NULL;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    pool_geom g = {0};
    if (planes("max_unpool2d", x, 2, &g)) return NULL;
    if (indices->dtype != AG_I64 || indices->ndim != x->ndim || ag__numel(x->ndim, x->shape) != ag_numel(indices) ||
        memcmp(indices->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim))
        return ag__fail_null(AG_ERR_SHAPE, "max_unpool2d: indices %s (%s) must be int64 of the input's shape %s",
                             ag__tshape(s1, indices), ag_dtype_name(indices->dtype), ag__tshape(s2, x));
    if (out_h < 0 || out_w < 0 || ((out_h == 0) != (out_w == 0)))
        return ag__fail_null(AG_ERR_ARG, "max_unpool2d: output size %lld x %lld must be positive (or 0 x 0: from the "
                             "options)", (long long)out_h, (long long)out_w);
    int64_t out[2] = {out_h, out_w};
    if (!out_h) { /* PyTorch's default: (in - 1)·stride - 2·padding + kernel */
        if (!o) return ag__fail_null(AG_ERR_ARG, "max_unpool2d: options with the kernel size are required");
        const int64_t in[2] = {g.H, g.W};
        for (int i = 0; i < 2; i++) {
            const int64_t k = o->kernel[i], st = o->stride[i] ? o->stride[i] : k, pad = o->padding[i];
            if (k < 1 || st < 0 || pad < 0 || ag__mul_overflow(in[i] - 1, st, &out[i]) ||
                ag__add_overflow(out[i], k - 2 * pad, &out[i]) || pad > AG_MAX_SIZE / 2)
                return ag__fail_null(AG_ERR_ARG, "max_unpool2d: kernel %lld must be positive and stride %lld, padding "
                                     "%lld not negative, nor overflowing (entry %d)", (long long)k, (long long)st,
                                     (long long)pad, i);
            if (out[i] < 1)
                return ag__fail_null(AG_ERR_SHAPE, "max_unpool2d: input %s with kernel %lld, stride %lld, padding %lld "
                                     "gives an output size of %lld (expected at least 1)", ag__tshape(s1, x),
                                     (long long)k, (long long)st, (long long)pad, (long long)out[i]);
        }
    }
    int64_t m, shape[AG_MAX_DIMS];
    if (ag__mul_overflow(out[0], out[1], &m))
        return ag__fail_null(AG_ERR_SHAPE, "max_unpool2d: output size %lld x %lld overflows", (long long)out[0],
                             (long long)out[1]);
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 2] = out[0], shape[x->ndim - 1] = out[1];
    if (ag__check_alloc("max_unpool2d", x->ndim, shape, x->dtype)) return NULL;
    ag_tensor *ic = ag__contig_or_copy(indices);
    if (!ic) return NULL;
    const int64_t n = g.H * g.W, *ip = (const int64_t *)ag__ptr(ic), total = ag_numel(ic);
    for (int64_t i = 0; i < total; i++)
        if (ip[i] < 0 || ip[i] >= m) {
            ag_release(ic);
            return ag__fail_null(AG_ERR_INDEX, "max_unpool2d: index %lld at position %lld is outside the output plane "
                                 "of %lld x %lld", (long long)ip[i], (long long)i, (long long)out[0], (long long)out[1]);
        }
    ag_tensor *y = ag__new_zeros(x->dtype, x->ndim, shape), *xc = y ? ag__contig_or_copy(x) : NULL;
    ag_tensor *saved = xc && ag__needs_grad1(x) ? ag__new_unowned(AG_I64, ic->ndim, ic->shape, false) : NULL;
    if (!xc || (ag__needs_grad1(x) && !saved)) {
        ag_release(ic);
        ag_release(xc);
        ag__discard(y);
        return NULL;
    }
    if (n && m) {
        if (x->dtype == AG_F64) unpool_f64(g.P, n, m, ip, (const double *)ag__ptr(xc), (double *)ag__ptr(y), true);
        else unpool_f32(g.P, n, m, ip, (const float *)ag__ptr(xc), (float *)ag__ptr(y), true);
    }
    if (saved) memcpy(ag__ptr(saved), ip, sizeof(int64_t) * (size_t)total);
    ag_release(ic);
    ag_release(xc);
    if (saved) {
        if (!ag__record(y, &op_max_unpool2d, &x, 1)) {
            ag_release(saved);
            return NULL;
        }
        y->saved = saved; /* the node owns the indices (a later change to `indices` does not reach it) */
    }
    return y;
}

/* dx = dy[idx] */
static ag_status max_unpool2d_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    const int nd = x->ndim;
    const int64_t P = ag__numel(nd - 2, x->shape), n = x->shape[nd - 2] * x->shape[nd - 1];
    const int64_t m = out->shape[nd - 2] * out->shape[nd - 1];
    ag_tensor *gx = ag__new_unowned(x->dtype, nd, x->shape, true);
    if (!gx) return AG_ERR_NOMEM;
    const int64_t *ip = (const int64_t *)ag__ptr(out->saved);
    if (n && m && x->dtype == AG_F64) unpool_f64(P, n, m, ip, (const double *)ag__ptr(gout), (double *)ag__ptr(gx), false);
    else if (n && m) unpool_f32(P, n, m, ip, (const float *)ag__ptr(gout), (float *)ag__ptr(gx), false);
    return ag__accumulate(x, gx);
}

/* ---- 1-d pooling: the 2-d ops over a height of 1 ---------------------------------------------------------- */
ag_tensor *ag_max_pool1d(ag_tensor *x, const ag_pool_opts *o, ag_tensor **indices) {
    AG_CHECK_HANDLES(NULL, "max_pool1d", x);
    return max_pool("max_pool1d", x, o, indices, 1);
}

ag_tensor *ag_avg_pool1d(ag_tensor *x, const ag_pool_opts *o) {
    AG_CHECK_HANDLES(NULL, "avg_pool1d", x);
    return avg_pool("avg_pool1d", x, o, 1);
}

const ag_op *const ag__pool_ops[] = {&op_max_pool2d, &op_avg_pool2d, &op_adaptive_avg_pool2d, &op_adaptive_max_pool2d,
                                     &op_max_unpool2d, &op_avg_pool2d_backward, &op_adaptive_avg_pool2d_backward, NULL};

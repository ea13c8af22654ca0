/*
 * bench_bn_blocked.c - what a convolution -> batch norm -> ReLU chain kept in oneDNN's
 * nChw16c layout would cost against the plain path the cnn_fashion step takes now, at the
 * step's two shapes (conv1 1 -> 32 channels at 28x28, conv2 32 -> 64 at 14x14, batch 128).
 *
 * The plain path (what agrad runs): the convolution's output z reordered nChw16c -> NCHW,
 * ag_batch_norm_relu forward on it (recording on), its backward (forward + ag_backward_ex
 * less the forward, less a copy of the seed, which ag_backward_ex makes), then dz reordered
 * NCHW -> nChw16c for the convolution's backward primitives.
 * The blocked paths: (a) AVX-512 kernels below that read z in nChw16c and write y = relu(bn(z))
 * plain (the forward) and dz in nChw16c from dy plain (the backward), 16 x 16 tiles transposed in
 * registers between the layouts, float64 sums in ag_batch_norm_relu's order (each plane's in AG_SUM8's
 * eight accumulators, the planes n = 0, 1, ...), relu's adjoint remade from z as cnn17's adjoint remakes
 * it from x: the float64 statistics, y, dz, dw and db are checked bit for bit against ag_batch_norm_relu's
 * each run (the tool fails if they differ); and a forward with one-pass statistics (other bits in general);
 * (b) oneDNN 2.6's batch normalization primitive with
 * fuse_norm_relu on nChw16c (float32 statistics), with the reorders of y to plain and of dy to
 * nChw16c that the plain tensors between ops would still need.  One run, the variants
 * alternated call by call; µs per call (BENCH_CLOCK=cpu for CPU time).
 * docs/benchmarks.md ("Session 15: the CNN step's blocked chain, measured") has the table.
 * Usage: bench_bn_blocked [--quick]
 */
#include <dnnl.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h" /* the node's saved float64 statistics */
#include "bench_util.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX512_KERNELS 1
#define AVX512 __attribute__((target("avx512f,avx512dq")))
#else
#define HAVE_AVX512_KERNELS 0
#endif

typedef struct shape {
    const char *name;
    int64_t n, c, o, h; /* x [n, c, h, h] -> z [n, o, h, h], 3x3, padding 1 */
} shape;

/* Per-channel mean, 1/sqrt(var + eps), scale r·w and shift b - μ·r·w of the blocked forward, read by its
 * backward. */
typedef struct stats {
    double *mean, *rstd, *scale, *shift;
} stats;

#if HAVE_AVX512_KERNELS
AVX512 static inline __m512d lo8(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
AVX512 static inline __m512d hi8(__m512 v) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
AVX512 static inline __m512 pack16(__m512d a, __m512d b) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(a)), _mm512_cvtpd_ps(b), 1);
}

/* r[i] = column i of the 16 x 16 tile whose rows r[0..15] are on entry (in-register transposition:
 * 64 shuffles a tile, where gathers would load each value alone). */
AVX512 static inline __attribute__((always_inline)) void tr16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++)
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]), t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    for (int i = 0; i < 4; i++) {
        u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++) {
            t[8 * h + i] = _mm512_shuffle_f32x4(u[8 * h + i], u[8 * h + i + 4], 0x88);
            t[8 * h + i + 4] = _mm512_shuffle_f32x4(u[8 * h + i], u[8 * h + i + 4], 0xDD);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
}

/* Block cb's statistics from its mean (m0, m1) and Σ(z - μ)² (q0, q1) as ag_batch_norm_relu makes them
 * (r = 1/√(q/M + ε), scale = w·r, shift = b - μ·scale, float64), then its y = relu((T)(z·scale + shift)),
 * relu's v <= 0 ? 0 : v (NaN kept, -0 made +0), each 16 x 16 tile of the block's rows transposed in
 * registers and written as the channels' planes of y. */
AVX512 static void apply_block(const shape *s, const float *z, float *y, const float *w, const float *b, int64_t cb,
                               __m512d m0, __m512d m1, __m512d q0, __m512d q1, stats *st) {
    const int64_t N = s->n, O = s->o, HW = s->h * s->h, CB = O / 16;
    const double M = (double)(N * HW);
    double m[16], q[16], sc[16], sh[16];
    _mm512_storeu_pd(m, m0), _mm512_storeu_pd(m + 8, m1), _mm512_storeu_pd(q, q0), _mm512_storeu_pd(q + 8, q1);
    for (int j = 0; j < 16; j++) {
        const int64_t c = cb * 16 + j;
        st->mean[c] = m[j];
        st->rstd[c] = 1 / sqrt(q[j] / M + 1e-5);
        st->scale[c] = sc[j] = (double)w[c] * st->rstd[c];
        st->shift[c] = sh[j] = (double)b[c] - m[j] * sc[j];
    }
    const __m512d S0 = _mm512_loadu_pd(sc), S1 = _mm512_loadu_pd(sc + 8), B0 = _mm512_loadu_pd(sh),
                  B1 = _mm512_loadu_pd(sh + 8);
    for (int64_t n = 0; n < N; n++) {
        const float *t = z + (n * CB + cb) * HW * 16;
        float *yp = y + (n * O + cb * 16) * HW;
        for (int64_t l0 = 0; l0 < HW; l0 += 16) { /* rows l0.. of the block, then as the channels' planes */
            const int nl = HW - l0 < 16 ? (int)(HW - l0) : 16;
            const __mmask16 k = (__mmask16)((1u << nl) - 1);
            __m512 r[16];
            for (int l = 0; l < 16; l++) {
                const __m512 v = l < nl ? _mm512_loadu_ps(t + (l0 + l) * 16) : _mm512_setzero_ps();
                const __m512 u = pack16(_mm512_add_pd(_mm512_mul_pd(lo8(v), S0), B0),
                                        _mm512_add_pd(_mm512_mul_pd(hi8(v), S1), B1));
                r[l] = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_NLE_UQ), u);
            }
            tr16(r);
            for (int j = 0; j < 16; j++) _mm512_mask_storeu_ps(yp + j * HW + l0, k, r[j]);
        }
    }
}

/* As bn_fwd_blocked with the statistics in one pass over z: Σd and Σd² of d = z - z₀ (z₀ each
 * channel's first value), μ = z₀ + Σd/M, Σ(z - μ)² = Σd² - (Σd)²/M (other bits: a variance
 * far below μ² loses digits). */
AVX512 static void bn_fwd_blocked_1pass(const shape *s, const float *z, float *y, const float *w, const float *b,
                                        stats *st) {
    const int64_t N = s->n, HW = s->h * s->h, CB = s->o / 16;
    const double M = (double)(N * HW);
    for (int64_t cb = 0; cb < CB; cb++) {
        const __m512 f = _mm512_loadu_ps(z + cb * HW * 16);
        const __m512d z0 = lo8(f), z1 = hi8(f);
        __m512d s0 = _mm512_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
        for (int64_t n = 0; n < N; n++) {
            const float *t = z + (n * CB + cb) * HW * 16;
            __m512d a0 = _mm512_setzero_pd(), a1 = a0, c0 = a0, c1 = a0;
            for (int64_t l = 0; l < HW; l++) {
                const __m512 v = _mm512_loadu_ps(t + l * 16);
                const __m512d d0 = _mm512_sub_pd(lo8(v), z0), d1 = _mm512_sub_pd(hi8(v), z1);
                a0 = _mm512_add_pd(a0, d0), a1 = _mm512_add_pd(a1, d1);
                c0 = _mm512_add_pd(c0, _mm512_mul_pd(d0, d0)), c1 = _mm512_add_pd(c1, _mm512_mul_pd(d1, d1));
            }
            s0 = _mm512_add_pd(s0, a0), s1 = _mm512_add_pd(s1, a1), q0 = _mm512_add_pd(q0, c0);
            q1 = _mm512_add_pd(q1, c1);
        }
        const __m512d iM = _mm512_set1_pd(1 / M);
        q0 = _mm512_max_pd(_mm512_sub_pd(q0, _mm512_mul_pd(_mm512_mul_pd(s0, s0), iM)), _mm512_setzero_pd());
        q1 = _mm512_max_pd(_mm512_sub_pd(q1, _mm512_mul_pd(_mm512_mul_pd(s1, s1), iM)), _mm512_setzero_pd());
        apply_block(s, z, y, w, b, cb, _mm512_add_pd(z0, _mm512_mul_pd(s0, iM)), _mm512_add_pd(z1, _mm512_mul_pd(s1, iM)),
                    q0, q1, st);
    }
}

/* Σ t (m NULL), Σ (t - m)² (g NULL) or Σ g·(t - m) over a plane of L rows of 16 channels (t[l·16 ..],
 * g[l·16 ..]), each channel's sum in AG_SUM8's order: accumulator k (a[k] the low eight channels, a[8 + k]
 * the high eight) takes the rows l = k mod 8 below L - L mod 8, tl the rows after, then ((a0 + a4) + (a1 +
 * a5)) + ((a2 + a6) + (a3 + a7)) + tail; added into acc[0..1] (so each channel's sums come in the order
 * n = 0, 1, ... of its planes: ag_batch_norm_relu's).  The eight rows of a step unrolled, so that the
 * accumulators stay in registers. */
AVX512 static inline __m512d term(__m512 v, __m512 gv, const __m512d *m, const float *g, int h) {
    __m512d d = h ? hi8(v) : lo8(v);
    if (!m) return d;
    d = _mm512_sub_pd(d, m[h]);
    return g ? _mm512_mul_pd(h ? hi8(gv) : lo8(gv), d) : _mm512_mul_pd(d, d);
}
AVX512 static inline void plane_sums(const float *t, const float *g, int64_t L, const __m512d *m, __m512d acc[2]) {
    __m512d a[16], tl[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    for (int k = 0; k < 16; k++) a[k] = _mm512_setzero_pd();
    int64_t l = 0;
    for (; l < L - L % 8; l += 8)
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const __m512 v = _mm512_loadu_ps(t + (l + k) * 16), gv = g ? _mm512_loadu_ps(g + (l + k) * 16) : v;
            a[k] = _mm512_add_pd(a[k], term(v, gv, m, g, 0)), a[8 + k] = _mm512_add_pd(a[8 + k], term(v, gv, m, g, 1));
        }
    for (; l < L; l++) {
        const __m512 v = _mm512_loadu_ps(t + l * 16), gv = g ? _mm512_loadu_ps(g + l * 16) : v;
        tl[0] = _mm512_add_pd(tl[0], term(v, gv, m, g, 0)), tl[1] = _mm512_add_pd(tl[1], term(v, gv, m, g, 1));
    }
    for (int h = 0; h < 2; h++) {
        const __m512d *b = a + 8 * h;
        const __m512d p04 = _mm512_add_pd(b[0], b[4]), p15 = _mm512_add_pd(b[1], b[5]),
                      p26 = _mm512_add_pd(b[2], b[6]), p37 = _mm512_add_pd(b[3], b[7]);
        const __m512d r = _mm512_add_pd(_mm512_add_pd(_mm512_add_pd(p04, p15), _mm512_add_pd(p26, p37)), tl[h]);
        acc[h] = _mm512_add_pd(acc[h], r);
    }
}

/* y = relu((z - μ)·r·w + b), z [N, O/16, HW, 16] -> y [N, O, HW]; per block of 16 channels Σz, then
 * Σ(z - μ)² (two passes, float64, each plane's sums in AG_SUM8's order and the planes in the order n = 0,
 * 1, ...: ag_batch_norm_relu's bits), then y (apply_block). */
AVX512 static void bn_fwd_blocked(const shape *s, const float *z, float *y, const float *w, const float *b,
                                  stats *st) {
    const int64_t N = s->n, HW = s->h * s->h, CB = s->o / 16;
    const __m512d M = _mm512_set1_pd((double)(N * HW));
    for (int64_t cb = 0; cb < CB; cb++) {
        __m512d sm[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()}, sq[2] = {sm[0], sm[0]};
        for (int64_t n = 0; n < N; n++) plane_sums(z + (n * CB + cb) * HW * 16, NULL, HW, NULL, sm);
        sm[0] = _mm512_div_pd(sm[0], M), sm[1] = _mm512_div_pd(sm[1], M);
        for (int64_t n = 0; n < N; n++) plane_sums(z + (n * CB + cb) * HW * 16, NULL, HW, sm, sq);
        apply_block(s, z, y, w, b, cb, sm[0], sm[1], sq[0], sq[1], st);
    }
}

/* How far ahead in each of its 16 planes grad_rows asks for dy (floats): 256 B, four tiles (conv2's backward
 * 3.25-3.30 -> 2.0-2.4 ms, the 16 planes' loads were half its samples; 32 and 128 no better). */
#define PF_AHEAD 64
/* Rows l0 .. l0 + 15 (nl of them) of relu's adjoint g = v <= 0 ? 0 : dy of image n of block cb, v =
 * (T)(z·scale + shift) remade from z as the forward rounded it (y <= 0 ? 0 : dy bit for bit, y not read),
 * dy's 16 planes' runs transposed in registers into the block's rows; z's rows in v[]. */
AVX512 static inline void grad_rows(const float *t, const float *gp, int64_t HW, int64_t l0, int nl,
                                    const __m512d S[2], const __m512d B[2], __m512 g[16], __m512 v[16]) {
    const __mmask16 k = (__mmask16)((1u << nl) - 1);
    for (int j = 0; j < 16; j++) {
        if (l0 + PF_AHEAD < HW) _mm_prefetch((const char *)(gp + j * HW + l0 + PF_AHEAD), _MM_HINT_T0);
        g[j] = _mm512_maskz_loadu_ps(k, gp + j * HW + l0);
    }
    tr16(g);
    for (int l = 0; l < nl; l++) {
        v[l] = _mm512_loadu_ps(t + (l0 + l) * 16);
        const __m512 u = pack16(_mm512_add_pd(_mm512_mul_pd(lo8(v[l]), S[0]), B[0]),
                                _mm512_add_pd(_mm512_mul_pd(hi8(v[l]), S[1]), B[1]));
        g[l] = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_NLE_UQ), g[l]);
    }
}

/* dz in nChw16c from dy plain as ag_batch_norm_relu's adjoint makes dx (its bits), two passes per block of
 * 16 channels: (1) each plane's g, relu's adjoint remade from z (grad_rows), into an L1/L2 buffer whose Σg
 * and Σg·(z - μ) are then taken in AG_SUM8's order (plane_sums), the planes in the order n = 0, 1, ..., and
 * streamed into dz (no read for ownership: conv1's backward 5.8-6.4 -> 3.7-4.3 ms); (2) k = w·r, a = Σg/M,
 * b = r²·Σg(z - μ)/M and dz = k·((g - a) - (z - μ)·b) in place (6 streams over memory in all: dy, z, dz;
 * z, dz, dz).  dw = Σg(z - μ)·r, db = Σg.  dz 64-byte aligned (false if not, or no memory). */
AVX512 static bool bn_bwd_blocked(const shape *s, const float *z, const float *dy, const float *w,
                                  const stats *st, float *dz, float *dw, float *db) {
    const int64_t N = s->n, O = s->o, HW = s->h * s->h, CB = O / 16;
    const double M = (double)(N * HW);
    float *gbuf = aligned_alloc(64, (size_t)HW * 64);
    if (!gbuf || (uintptr_t)dz % 64) return free(gbuf), false;
    for (int64_t cb = 0; cb < CB; cb++) {
        const __m512d m[2] = {_mm512_loadu_pd(st->mean + cb * 16), _mm512_loadu_pd(st->mean + cb * 16 + 8)},
                      S[2] = {_mm512_loadu_pd(st->scale + cb * 16), _mm512_loadu_pd(st->scale + cb * 16 + 8)},
                      B[2] = {_mm512_loadu_pd(st->shift + cb * 16), _mm512_loadu_pd(st->shift + cb * 16 + 8)};
        __m512d SG[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()}, SX[2] = {SG[0], SG[0]};
        for (int64_t n = 0; n < N; n++) {
            const float *t = z + (n * CB + cb) * HW * 16, *gp = dy + (n * O + cb * 16) * HW;
            float *gd = dz + (n * CB + cb) * HW * 16;
            for (int64_t l0 = 0; l0 < HW; l0 += 16) { /* the plane's g in the block's rows, in gbuf and dz */
                const int nl = HW - l0 < 16 ? (int)(HW - l0) : 16;
                __m512 g[16], v[16];
                grad_rows(t, gp, HW, l0, nl, S, B, g, v);
                for (int l = 0; l < nl; l++) {
                    _mm512_store_ps(gbuf + (l0 + l) * 16, g[l]);
                    _mm512_stream_ps(gd + (l0 + l) * 16, g[l]); /* no read for ownership of dz */
                }
            }
            plane_sums(gbuf, NULL, HW, NULL, SG);
            plane_sums(t, gbuf, HW, m, SX);
        }
        _mm_sfence();
        double sg[16], sx[16], k[16], a[16], bb[16];
        _mm512_storeu_pd(sg, SG[0]), _mm512_storeu_pd(sg + 8, SG[1]), _mm512_storeu_pd(sx, SX[0]);
        _mm512_storeu_pd(sx + 8, SX[1]);
        for (int j = 0; j < 16; j++) {
            const int64_t c = cb * 16 + j;
            const double r = st->rstd[c];
            dw[c] = (float)(sx[j] * r);
            db[c] = (float)sg[j];
            k[j] = (double)w[c] * r, a[j] = sg[j] / M, bb[j] = r * r * sx[j] / M;
        }
        const __m512d K[2] = {_mm512_loadu_pd(k), _mm512_loadu_pd(k + 8)},
                      A[2] = {_mm512_loadu_pd(a), _mm512_loadu_pd(a + 8)},
                      BB[2] = {_mm512_loadu_pd(bb), _mm512_loadu_pd(bb + 8)};
        for (int64_t n = 0; n < N; n++) {
            const float *t = z + (n * CB + cb) * HW * 16;
            float *d = dz + (n * CB + cb) * HW * 16;
            for (int64_t l = 0; l < HW; l++) {
                const __m512 g = _mm512_loadu_ps(d + l * 16), v = _mm512_loadu_ps(t + l * 16);
                const __m512d e0 = _mm512_mul_pd(_mm512_sub_pd(lo8(v), m[0]), BB[0]),
                              e1 = _mm512_mul_pd(_mm512_sub_pd(hi8(v), m[1]), BB[1]);
                const __m512d r0 = _mm512_mul_pd(K[0], _mm512_sub_pd(_mm512_sub_pd(lo8(g), A[0]), e0)),
                              r1 = _mm512_mul_pd(K[1], _mm512_sub_pd(_mm512_sub_pd(hi8(g), A[1]), e1));
                _mm512_storeu_ps(d + l * 16, pack16(r0, r1));
            }
        }
    }
    free(gbuf);
    return true;
}
#endif

enum { R_Z, R_DZ, SEED, AG_FWD, AG_BWD, BLK_FWD, BLK_FWD1, BLK_BWD, DN_FWD, DN_Y, DN_DY, DN_BWD, CONV, NVAR };
static const char *const var_name[NVAR] = {
    "reorder z nChw16c -> NCHW", "reorder dz NCHW -> nChw16c", "memcpy of z (the seed copy)",
    "agrad batch_norm_relu forward", "agrad batch_norm_relu backward (+ seed copy)",
    "blocked kernels forward (z blk -> y)", "  the same, one-pass statistics (other bits)",
    "blocked kernels backward (-> dz blk)",
    "oneDNN bnorm+relu forward blk -> blk", "  + reorder y nChw16c -> NCHW", "  + reorder dy NCHW -> nChw16c",
    "oneDNN bnorm+relu backward blk -> blk", "the convolution's forward (control)"};

#define CK(call)                                                                     \
    do {                                                                             \
        if ((call) != dnnl_success) {                                                \
            fprintf(stderr, "bench_bn_blocked: %s failed at line %d\n", #call, __LINE__); \
            return false;                                                            \
        }                                                                            \
    } while (0)

static dnnl_engine_t eng;
static dnnl_stream_t strm;

static dnnl_memory_t mem(const dnnl_memory_desc_t *md, void *p) {
    dnnl_memory_t m;
    return dnnl_memory_create(&m, md, eng, p ? p : DNNL_MEMORY_ALLOCATE) == dnnl_success ? m : NULL;
}

static bool exec(dnnl_primitive_t p, int n, const dnnl_exec_arg_t *a) {
    return dnnl_primitive_execute(p, strm, n, a) == dnnl_success;
}

static bool reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, dnnl_primitive_t *p) {
    dnnl_primitive_desc_t pd;
    CK(dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, NULL));
    CK(dnnl_primitive_create(p, pd));
    dnnl_primitive_desc_destroy(pd);
    return true;
}

static float *filled(size_t n, unsigned seed, float scale) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++) p[i] = ((float)((i * 2654435761u + seed) % 1000) / 500.0f - 1.0f) * scale;
    return p;
}

static bool run_shape(const shape *s, int reps) {
    const int64_t N = s->n, C = s->c, O = s->o, H = s->h, HW = H * H;
    const size_t nz = (size_t)(N * O * HW), nx = (size_t)(N * C * HW);
    dnnl_memory_desc_t xp, zp, wp, bp, xa, za, wa, z16, ssd;
    dnnl_dims_t dx = {N, C, H, H}, dz = {N, O, H, H}, dw = {O, C, 3, 3}, dbias = {O}, dss = {2, O};
    CK(dnnl_memory_desc_init_by_tag(&xp, 4, dx, dnnl_f32, dnnl_nchw));
    CK(dnnl_memory_desc_init_by_tag(&zp, 4, dz, dnnl_f32, dnnl_nchw));
    CK(dnnl_memory_desc_init_by_tag(&wp, 4, dw, dnnl_f32, dnnl_oihw));
    CK(dnnl_memory_desc_init_by_tag(&bp, 1, dbias, dnnl_f32, dnnl_a));
    CK(dnnl_memory_desc_init_by_tag(&xa, 4, dx, dnnl_f32, dnnl_format_tag_any));
    CK(dnnl_memory_desc_init_by_tag(&za, 4, dz, dnnl_f32, dnnl_format_tag_any));
    CK(dnnl_memory_desc_init_by_tag(&wa, 4, dw, dnnl_f32, dnnl_format_tag_any));
    CK(dnnl_memory_desc_init_by_tag(&z16, 4, dz, dnnl_f32, dnnl_nChw16c));
    CK(dnnl_memory_desc_init_by_tag(&ssd, 2, dss, dnnl_f32, dnnl_nc));
    /* the convolution as agrad runs it: Winograd from 16 input channels, else direct */
    dnnl_dims_t one = {1, 1};
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t cpd, bfpd, bbpd;
    CK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training,
                                          C >= 16 ? dnnl_convolution_winograd : dnnl_convolution_direct, &xa, &wa,
                                          &bp, &za, one, one, one));
    CK(dnnl_primitive_desc_create(&cpd, &cd, NULL, eng, NULL));
    const dnnl_memory_desc_t *xb = dnnl_primitive_desc_query_md(cpd, dnnl_query_src_md, 0),
                             *zb = dnnl_primitive_desc_query_md(cpd, dnnl_query_dst_md, 0),
                             *wb = dnnl_primitive_desc_query_md(cpd, dnnl_query_weights_md, 0);
    if (!dnnl_memory_desc_equal(zb, &z16)) {
        printf("%s: the convolution's output is not nChw16c here; skipped\n", s->name);
        return true;
    }
    dnnl_primitive_t conv, r_zb2p, r_zp2b, r_x, r_w, bnf, bnb;
    CK(dnnl_primitive_create(&conv, cpd));
    if (!reorder(zb, &zp, &r_zb2p) || !reorder(&zp, zb, &r_zp2b) || !reorder(&xp, xb, &r_x) || !reorder(&wp, wb, &r_w))
        return false;
    const unsigned flags = dnnl_use_scaleshift | dnnl_fuse_norm_relu;
    dnnl_batch_normalization_desc_t bfd, bbd;
    CK(dnnl_batch_normalization_forward_desc_init(&bfd, dnnl_forward_training, zb, 1e-5f, flags));
    CK(dnnl_primitive_desc_create(&bfpd, &bfd, NULL, eng, NULL));
    CK(dnnl_batch_normalization_backward_desc_init(&bbd, dnnl_backward, zb, zb, 1e-5f, flags));
    CK(dnnl_primitive_desc_create(&bbpd, &bbd, NULL, eng, bfpd));
    CK(dnnl_primitive_create(&bnf, bfpd));
    CK(dnnl_primitive_create(&bnb, bbpd));
    const char *impl_f = "?", *impl_b = "?";
    dnnl_primitive_desc_query(bfpd, dnnl_query_impl_info_str, 0, &impl_f);
    dnnl_primitive_desc_query(bbpd, dnnl_query_impl_info_str, 0, &impl_b);
    float *X = filled(nx, 1, 1), *W = filled((size_t)(O * C * 9), 2, 0.2f), *B = filled((size_t)O, 3, 0.1f),
          *DY = filled(nz, 4, 1), *bw = filled((size_t)O, 5, 0.5f), *bb = filled((size_t)O, 6, 0.1f),
          *Xb = malloc(nx * 4), *Wb = malloc(dnnl_memory_desc_get_size(wb)), *Zb = malloc(nz * 4),
          *Zp = malloc(nz * 4), *Y = malloc(nz * 4), *DZb = aligned_alloc(64, nz * 4), *DZp = malloc(nz * 4),
          *gw = malloc((size_t)O * 4), *gb = malloc((size_t)O * 4), *SS = malloc((size_t)O * 8), *DSS = malloc((size_t)O * 8);
    double *mean = malloc((size_t)O * 8), *rstd = malloc((size_t)O * 8), *scale = malloc((size_t)O * 8),
           *shift = malloc((size_t)O * 8);
    stats st = {mean, rstd, scale, shift};
    (void)st;
    for (int64_t i = 0; i < O; i++) bw[i] += 1, SS[i] = bw[i], SS[O + i] = bb[i];
    dnnl_memory_t mX = mem(&xp, X), mXb = mem(xb, Xb), mW = mem(&wp, W), mWb = mem(wb, Wb), mB = mem(&bp, B),
                  mZb = mem(zb, Zb), mZp = mem(&zp, Zp), mDZp = mem(&zp, DZp), mDZb = mem(zb, DZb),
                  mSS = mem(&ssd, SS), mDSS = mem(&ssd, DSS),
                  mM = mem(dnnl_primitive_desc_query_md(bfpd, dnnl_query_dst_md, 1), NULL),
                  mV = mem(dnnl_primitive_desc_query_md(bfpd, dnnl_query_dst_md, 2), NULL),
                  mWS = mem(dnnl_primitive_desc_query_md(bfpd, dnnl_query_workspace_md, 0), NULL),
                  mYb = mem(zb, NULL), mDYb = mem(zb, NULL), mDY = mem(&zp, DY), mY = mem(&zp, Y);
    const dnnl_exec_arg_t ax[] = {{DNNL_ARG_FROM, mX}, {DNNL_ARG_TO, mXb}}, aw[] = {{DNNL_ARG_FROM, mW}, {DNNL_ARG_TO, mWb}},
                          ac[] = {{DNNL_ARG_SRC, mXb}, {DNNL_ARG_WEIGHTS, mWb}, {DNNL_ARG_BIAS, mB}, {DNNL_ARG_DST, mZb}},
                          az[] = {{DNNL_ARG_FROM, mZb}, {DNNL_ARG_TO, mZp}}, adz[] = {{DNNL_ARG_FROM, mDZp}, {DNNL_ARG_TO, mDZb}},
                          adzb[] = {{DNNL_ARG_FROM, mDZb}, {DNNL_ARG_TO, mDZp}},
                          ay[] = {{DNNL_ARG_FROM, mYb}, {DNNL_ARG_TO, mY}}, ady[] = {{DNNL_ARG_FROM, mDY}, {DNNL_ARG_TO, mDYb}},
                          abf[] = {{DNNL_ARG_SRC, mZb}, {DNNL_ARG_SCALE_SHIFT, mSS}, {DNNL_ARG_DST, mYb},
                                   {DNNL_ARG_MEAN, mM}, {DNNL_ARG_VARIANCE, mV}, {DNNL_ARG_WORKSPACE, mWS}},
                          abb[] = {{DNNL_ARG_SRC, mZb}, {DNNL_ARG_SCALE_SHIFT, mSS}, {DNNL_ARG_DIFF_DST, mDYb},
                                   {DNNL_ARG_MEAN, mM}, {DNNL_ARG_VARIANCE, mV}, {DNNL_ARG_WORKSPACE, mWS},
                                   {DNNL_ARG_DIFF_SRC, mDZb}, {DNNL_ARG_DIFF_SCALE_SHIFT, mDSS}};
    if (!exec(r_x, 2, ax) || !exec(r_w, 2, aw) || !exec(conv, 4, ac) || !exec(r_zb2p, 2, az)) return false;
    ag_tensor *tz = ag_requires_grad_(ag_from_data(Zp, AG_SHAPE(N, O, H, H), AG_F32), true),
              *tw = ag_requires_grad_(ag_from_data(bw, AG_SHAPE(O), AG_F32), true),
              *tb = ag_requires_grad_(ag_from_data(bb, AG_SHAPE(O), AG_F32), true),
              *tg = ag_from_data(DY, AG_SHAPE(N, O, H, H), AG_F32);
    const bool blk = HAVE_AVX512_KERNELS && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#if HAVE_AVX512_KERNELS
    if (blk) { /* the blocked kernels against ag_batch_norm_relu: y, dz (reordered to plain) and dw */
        ag_tensor *ty = ag_batch_norm_relu(tz, NULL, NULL, tw, tb, true, 0.1, 1e-5);
        bn_fwd_blocked(s, Zb, Y, bw, bb, &st);
        /* the node's saved μ, r, scale and shift (float64, [4, O]) against the kernels': the sums' order shows */
        const double *sv = ty && ty->saved ? (const double *)ag__ptr(ty->saved) : NULL;
        const bool same_st = sv && ag_numel(ty->saved) == 4 * O && !memcmp(sv, mean, (size_t)O * 8) &&
                             !memcmp(sv + O, rstd, (size_t)O * 8) && !memcmp(sv + 2 * O, scale, (size_t)O * 8) &&
                             !memcmp(sv + 3 * O, shift, (size_t)O * 8);
        ag_backward_ex(ty, tg, false);
        if (!bn_bwd_blocked(s, Zb, DY, bw, &st, DZb, gw, gb)) return false;
        if (!exec(r_zb2p, 2, adzb)) return false;
        const float *ry = ag_data(ty), *rdz = ag_data(ag_grad(tz)), *rdw = ag_data(ag_grad(tw)),
                    *rdb = ag_data(ag_grad(tb));
        const bool same = same_st && !memcmp(ry, Y, nz * 4) && !memcmp(rdz, DZp, nz * 4) &&
                          !memcmp(rdw, gw, (size_t)O * 4) && !memcmp(rdb, gb, (size_t)O * 4);
        double ey = 0, edz = 0, edw = 0;
        for (size_t i = 0; i < nz; i++) ey = fmax(ey, fabs(ry[i] - Y[i])), edz = fmax(edz, fabs(rdz[i] - DZp[i]));
        for (int64_t i = 0; i < O; i++) edw = fmax(edw, fabs(rdw[i] - gw[i]));
        bn_fwd_blocked_1pass(s, Zb, Y, bw, bb, &st);
        double e1 = 0;
        for (size_t i = 0; i < nz; i++) e1 = fmax(e1, fabs(ry[i] - Y[i]));
        printf("%s: blocked kernels against ag_batch_norm_relu: float64 statistics, y, dz, dw and db %s; max "
               "|difference|: y %g, dz %g, dw %g (one-pass statistics: y %g)\n",
               s->name, same ? "bit for bit equal" : "DIFFER", ey, edz, edw, e1);
        if (!same) return false;
        ag_release(ty);
        ag_zero_grad(tz), ag_zero_grad(tw), ag_zero_grad(tb);
    }
#endif
    printf("%s: oneDNN batch normalization %s / %s\n", s->name, impl_f, impl_b);
    double *t = malloc(sizeof(double) * NVAR * (size_t)reps);
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
#define LAP(v) (t[(v) * reps + r] = bench_now() - t0, t0 = bench_now())
        if (!exec(r_zb2p, 2, az)) return false;
        LAP(R_Z);
        if (!exec(r_zp2b, 2, adz)) return false;
        LAP(R_DZ);
        memcpy(DZp, DY, nz * 4);
        LAP(SEED);
        ag_tensor *ty = ag_batch_norm_relu(tz, NULL, NULL, tw, tb, true, 0.1, 1e-5);
        LAP(AG_FWD);
        ag_backward_ex(ty, tg, false);
        LAP(AG_BWD);
        ag_release(ty);
        ag_zero_grad(tz), ag_zero_grad(tw), ag_zero_grad(tb);
        t0 = bench_now();
#if HAVE_AVX512_KERNELS
        if (blk) bn_fwd_blocked_1pass(s, Zb, Y, bw, bb, &st);
        LAP(BLK_FWD1);
        if (blk) bn_fwd_blocked(s, Zb, Y, bw, bb, &st);
        LAP(BLK_FWD);
        if (blk && !bn_bwd_blocked(s, Zb, DY, bw, &st, DZb, gw, gb)) return false;
        LAP(BLK_BWD);
#endif
        if (!exec(bnf, 6, abf)) return false;
        LAP(DN_FWD);
        if (!exec(r_zb2p, 2, ay)) return false;
        LAP(DN_Y);
        if (!exec(r_zp2b, 2, ady)) return false;
        LAP(DN_DY);
        if (!exec(bnb, 8, abb)) return false;
        LAP(DN_BWD);
        if (!exec(conv, 4, ac)) return false;
        LAP(CONV);
#undef LAP
    }
    printf("%-48s %10s %10s %10s\n", s->name, "median", "p10", "p90");
    for (int v = 0; v < NVAR; v++) {
        if (!blk && (v == BLK_FWD || v == BLK_FWD1 || v == BLK_BWD)) continue;
        double *tv = t + v * reps;
        qsort(tv, (size_t)reps, sizeof(double), bench_cmp_double);
        printf("%-48s %10.1f %10.1f %10.1f\n", var_name[v], 1e6 * bench_quantile(tv, reps, 0.5),
               1e6 * bench_quantile(tv, reps, 0.1), 1e6 * bench_quantile(tv, reps, 0.9));
    }
    free(t);
    ag_release(tz), ag_release(tw), ag_release(tb), ag_release(tg);
    dnnl_memory_t ms[] = {mX, mXb, mW, mWb, mB, mZb, mZp, mDZp, mDZb, mSS, mDSS, mM, mV, mWS, mYb, mDYb, mDY, mY};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) dnnl_memory_destroy(ms[i]);
    dnnl_primitive_t ps[] = {conv, r_zb2p, r_zp2b, r_x, r_w, bnf, bnb};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) dnnl_primitive_destroy(ps[i]);
    dnnl_primitive_desc_destroy(cpd), dnnl_primitive_desc_destroy(bfpd), dnnl_primitive_desc_destroy(bbpd);
    float *fs[] = {X, W, B, DY, bw, bb, Xb, Wb, Zb, Zp, Y, DZb, DZp, gw, gb, SS, DSS};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) free(fs[i]);
    free(mean), free(rstd), free(scale), free(shift);
    return true;
}

int main(int argc, char **argv) {
    const bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    const int reps = quick ? 11 : 41;
    static const shape shapes[] = {{"conv2 -> bn2 [128, 64, 14, 14]", 128, 32, 64, 14},
                                   {"conv1 -> bn1 [128, 32, 28, 28]", 128, 1, 32, 28}};
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&strm, eng, dnnl_stream_default_flags) != dnnl_success)
        return 1;
    printf("batch norm + ReLU after a convolution, blocked against plain; %d threads, %s clock, load %.2f; µs per call\n",
           ag_get_num_threads(), getenv("BENCH_CLOCK") ? getenv("BENCH_CLOCK") : "wall", bench_loadavg());
    bool ok = true;
    for (size_t i = 0; ok && i < sizeof shapes / sizeof shapes[0]; i++) ok = run_shape(&shapes[i], reps);
    dnnl_stream_destroy(strm);
    dnnl_engine_destroy(eng);
    return ok ? 0 : 1;
}

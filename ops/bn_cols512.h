/*
 * ops/bn_cols512.h - batch norm over [N, C] float32 (ops/norm.c's bn_cols_* kernels) in explicit AVX-512
 * lanes, sixteen channels a vector, for CPUs with x86-64-v4 (AG_VEC_512()).  Each is the C kernel's
 * arithmetic, operation for operation in its order (no contraction in ISO C mode, the same conversions),
 * each channel's float64 sum in row order in a lane of its own, so the bits are the C kernels' (test_nn_layers'
 * test_bn_cols_avx512 checks them against the C kernels, ag__bn_cols_avx512 = false).  What GCC made of the C
 * kernels on the AMD EPYC (Zen 5) host, [256, 512], one thread: relu's and dropout's adjoint g = y <= 0 ? 0 :
 * dy·s read dy by a masked load (vmulps mem{k}{z}) and the sums wrote g into a block in L1 and read it back,
 * and the forward's apply ran on AVX2 after a pass of its own that made dropout's mask into a buffer.  Here g
 * is a full load and a zeroing move, the sums keep their accumulators in registers over four rows, and the
 * mask's hashes are compared where y is made.  The adjoint's dx pass stays in C (its x86-64-v3 clone): an
 * AVX-512 one ran the plain adjoint slower (docs/benchmarks.md, Session 22, bnnc22).
 */
#ifndef AGRAD_BN_COLS512_H
#define AGRAD_BN_COLS512_H

#include "core/internal.h"
#include "core/mix512.h"

#ifdef AG_X86_INTRINSICS
#include <immintrin.h>

#define BN512 __attribute__((target("avx512f,avx512dq,avx512vl")))

/* The mask of the first n of 16 lanes (n may be <= 0 or >= 16) */
static inline __mmask16 bn512_first16(int64_t n) {
    return n <= 0 ? 0 : n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

/* The low and the high eight floats of v widened to float64 (exact) */
BN512 static inline __m512d bn512_lo(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
BN512 static inline __m512d bn512_hi(__m512 v) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/* relu's and dropout's adjoint g = y <= 0 ? 0 : dy·s (y NaN: dy·s), from dy loaded whole: the product is kept
 * from folding into a masked multiply, whose memory operand is a masked load */
BN512 static inline __m512 bn512_fold_g(__m512 y, __m512 dy, __m512 s) {
    __m512 d = _mm512_mul_ps(dy, s);
    __asm__("" : "+v"(d)); /* no vmulps mem{k}{z} */
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_NLE_UQ), d);
}

/* Adds rows [0, R) (R <= 4) of sixteen columns (lanes outside m zero; full: all sixteen, plain loads) of rows
 * of C at y, dy, x to the sums a (Σ g, the low and the high eight columns) and b (Σ (double)(g·(x - t))), in
 * row order; g = dy (y NULL) or y <= 0 ? 0 : dy·s */
BN512 static inline void bn512_sums16(const float *y, const float *dy, const float *x, int64_t C, int64_t R,
                                      __mmask16 m, bool full, __m512 t, __m512 s, __m512d *a, __m512d *b) {
    for (int64_t r = 0; r < R; r++) {
        __m512 g = full ? _mm512_loadu_ps(dy + r * C) : _mm512_maskz_loadu_ps(m, dy + r * C);
        const __m512 xv = full ? _mm512_loadu_ps(x + r * C) : _mm512_maskz_loadu_ps(m, x + r * C);
        if (y) g = bn512_fold_g(full ? _mm512_loadu_ps(y + r * C) : _mm512_maskz_loadu_ps(m, y + r * C), g, s);
        const __m512 p = _mm512_mul_ps(g, _mm512_sub_ps(xv, t));
        a[0] = _mm512_add_pd(a[0], bn512_lo(g)), a[1] = _mm512_add_pd(a[1], bn512_hi(g));
        b[0] = _mm512_add_pd(b[0], bn512_lo(p)), b[1] = _mm512_add_pd(b[1], bn512_hi(p));
    }
}

/* sdy[c] = Σ g, sdyx[c] = Σ (double)(g·(x - mt[c])) (the product in float32) over rows [n0, n1) from 0, in row
 * order, columns [c0, c1) of rows of C; g = dy (y NULL) or y <= 0 ? 0 : dy·s: bn_cols_grad_sums and
 * bn_cols_fold_chunk, the same bits.  Four rows a sweep over the columns (contiguous runs for the prefetchers),
 * each sixteen columns' four float64 sums held in registers across the four. */
BN512 static void bn_cols_grad_sums_f32_512(const float *y, const float *dy, const float *x, int64_t n0, int64_t n1,
                                            int64_t C, int64_t c0, int64_t c1, float s, const float *mt,
                                            double *sdy, double *sdyx) {
    const __m512 sv = _mm512_set1_ps(s);
    for (int64_t c = c0; c < c1; c++) sdy[c] = sdyx[c] = 0;
    for (int64_t n = n0; n < n1; n += 4) {
        const int64_t R = n1 - n < 4 ? n1 - n : 4, o = n * C;
        const float *yr = y ? y + o : NULL;
        int64_t c = c0;
        for (; c + 16 <= c1; c += 16) {
            __m512d a[2] = {_mm512_loadu_pd(sdy + c), _mm512_loadu_pd(sdy + c + 8)};
            __m512d b[2] = {_mm512_loadu_pd(sdyx + c), _mm512_loadu_pd(sdyx + c + 8)};
            bn512_sums16(yr ? yr + c : NULL, dy + o + c, x + o + c, C, R, 0xffff, true, _mm512_loadu_ps(mt + c), sv, a, b);
            _mm512_storeu_pd(sdy + c, a[0]), _mm512_storeu_pd(sdy + c + 8, a[1]);
            _mm512_storeu_pd(sdyx + c, b[0]), _mm512_storeu_pd(sdyx + c + 8, b[1]);
        }
        if (c < c1) {
            const __mmask16 m = bn512_first16(c1 - c);
            const __mmask8 lo = (__mmask8)m, hi = (__mmask8)(m >> 8);
            __m512d a[2] = {_mm512_maskz_loadu_pd(lo, sdy + c), _mm512_maskz_loadu_pd(hi, sdy + c + 8)};
            __m512d b[2] = {_mm512_maskz_loadu_pd(lo, sdyx + c), _mm512_maskz_loadu_pd(hi, sdyx + c + 8)};
            bn512_sums16(yr ? yr + c : NULL, dy + o + c, x + o + c, C, R, m, false, _mm512_maskz_loadu_ps(m, mt + c), sv, a, b);
            _mm512_mask_storeu_pd(sdy + c, lo, a[0]), _mm512_mask_storeu_pd(sdy + c + 8, hi, a[1]);
            _mm512_mask_storeu_pd(sdyx + c, lo, b[0]), _mm512_mask_storeu_pd(sdyx + c + 8, hi, b[1]);
        }
    }
}

/* Sixteen values (float32)(x·scale + shift), the product and the sum in float64, of the columns whose scale and
 * shift start at sc and sh; m: the lanes to read (the others zero; full: all sixteen, by plain loads) */
BN512 static inline __m512 bn512_apply16(const float *x, const double *sc, const double *sh, __mmask16 m, bool full) {
    const __mmask8 lo = (__mmask8)m, hi = (__mmask8)(m >> 8);
    const __m512 xv = full ? _mm512_loadu_ps(x) : _mm512_maskz_loadu_ps(m, x);
    const __m512d s0 = full ? _mm512_loadu_pd(sc) : _mm512_maskz_loadu_pd(lo, sc);
    const __m512d s1 = full ? _mm512_loadu_pd(sc + 8) : _mm512_maskz_loadu_pd(hi, sc + 8);
    const __m512d h0 = full ? _mm512_loadu_pd(sh) : _mm512_maskz_loadu_pd(lo, sh);
    const __m512d h1 = full ? _mm512_loadu_pd(sh + 8) : _mm512_maskz_loadu_pd(hi, sh + 8);
    const __m512d v0 = _mm512_add_pd(_mm512_mul_pd(bn512_lo(xv), s0), h0);
    const __m512d v1 = _mm512_add_pd(_mm512_mul_pd(bn512_hi(xv), s1), h1);
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(v0)), _mm512_cvtpd_ps(v1), 1);
}

/* relu(v)·keep: (v <= 0 ? 0 : v) times s where keep holds the lane, else times 0 (so NaN·0 stays NaN, as
 * bn_cols_apply_drop's product with a mask of 0 or s) */
BN512 static inline __m512 bn512_relu_keep(__m512 v, __mmask16 keep, __m512 s) {
    const __m512 r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLE_UQ), v);
    return _mm512_mul_ps(r, _mm512_maskz_mov_ps(keep, s));
}

/* y = relu(x·scale + shift)·keep over rows [n0, n1), columns [c0, c1) of rows of C, keep dropout's mask of key
 * k (0 or s: ag__rand_keep_part's values), element i kept where the 32-bit half i mod 2 of the hash of pair i/2
 * (ag__mix64 of k + (i/2 + 1)·γ) is below k.bound: a vector of eight hashes is sixteen elements' halves in
 * order.  n·C + c0 must be even for every row (C and c0 even).  bn_cols_apply_drop's bits without its
 * mask buffer. */
BN512 static void bn_cols_apply_drop_f32_512(float *y, const float *x, int64_t n0, int64_t n1, int64_t C, int64_t c0,
                                             int64_t c1, const double *scale, const double *shift, ag_keep_key k,
                                             float s) {
    const bool all = k.bound > 0xffffffff;
    const __m512i b = _mm512_set1_epi32((int)(all ? 0xffffffffu : (uint32_t)k.bound));
    const __m512i step = _mm512_set1_epi64((long long)(8 * AG_MIX_GAMMA));
    const __m512 sv = _mm512_set1_ps(s);
    for (int64_t n = n0; n < n1; n++) {
        __m512i ctr = ag__counters8_512(k.key, (uint64_t)((n * C + c0) / 2), 1);
        int64_t c = c0;
        for (; c + 16 <= c1; c += 16, ctr = _mm512_add_epi64(ctr, step)) {
            const __mmask16 keep = all ? (__mmask16)0xffff : _mm512_cmplt_epu32_mask(ag__mix8_512(ctr), b);
            _mm512_storeu_ps(y + n * C + c, bn512_relu_keep(bn512_apply16(x + n * C + c, scale + c, shift + c, 0xffff, true), keep, sv));
        }
        if (c < c1) {
            const __mmask16 m = bn512_first16(c1 - c);
            const __mmask16 keep = all ? (__mmask16)0xffff : _mm512_cmplt_epu32_mask(ag__mix8_512(ctr), b);
            _mm512_mask_storeu_ps(y + n * C + c, m, bn512_relu_keep(bn512_apply16(x + n * C + c, scale + c, shift + c, m, false), keep, sv));
        }
    }
}

#undef BN512
#endif

#endif

/*
 * core/bf16_blocked.c - float32 NCHW activations to bfloat16 nChw16c in one pass.
 *
 * oneDNN's direct bf16 convolutions read their activations (x, and dy in backward) as
 * bf16 in nChw16c: each image's channels in blocks of 16, a block stored position by
 * position with its 16 channels side by side.  oneDNN 2.6's reorder from plain float32
 * NCHW into that layout and type (jit:uni) took 14.6 µs for a [6, 32, 14, 14] chunk of
 * conv2d_cnn_bf16 on one AMD Zen 5 core, where the same transposition in float32
 * (jit:blk) took 2.8 µs and the conversion alone 1.9: with dy's, about 0.6 ms of that
 * step's 5.3.  This kernel (4.3 µs there) loads 16 channels' rows of 16 positions,
 * transposes them in registers and rounds them with the same instruction oneDNN's reorder uses on a CPU with
 * AVX-512 BF16 (vcvtne2ps2bf16: to nearest even, subnormals to zero, NaN quieted), so it
 * writes the same bits (test_autocast checks them against oneDNN's reorder).
 */
#include <string.h>
#include "core/autocast.h"
#include "core/parallel.h"
#include "core/sum.h"
#ifdef AG_X86_INTRINSICS
#include <immintrin.h>
#endif

#ifdef AG_X86_INTRINSICS
/* Positions [s, s + 16) of 16 channels at p (a channel's positions hw apart) into out[16][16]:
 * each register gathers four rows' quads by 128-bit broadcast loads (the load ports do the
 * first two transposition stages), then a 4x4 transpose within each 128-bit lane puts one
 * position's 16 channels in a register (32 shuffles where a 16x16 transpose from whole rows
 * takes 64: [6, 32, 14, 14] in 7.3 µs with those, 4.3 with these).  Sixteen rows are more
 * streams than the hardware prefetcher follows: from memory that chunk took 24-36 µs (oneDNN's
 * reorder 17-25), with each row prefetched four tiles ahead 11-16. */
__attribute__((target("avx512f,avx512bf16"), always_inline)) static inline void tile16(uint16_t *out, const float *p,
                                                                                       int64_t hw) {
    __m512 r[16];
    for (int c = 0; c < 16; c++) /* four tiles ahead (prefetches never fault past the end) */
        _mm_prefetch((const char *)(p + c * hw + 64), _MM_HINT_T0);
    for (int k = 0; k < 4; k++) /* r[4k + q], lane L: channel 4L + q at positions 4k .. 4k + 3 */
        for (int q = 0; q < 4; q++) {
            __m512 v = _mm512_broadcast_f32x4(_mm_loadu_ps(p + q * hw + 4 * k));
            v = _mm512_mask_broadcast_f32x4(v, 0x00f0, _mm_loadu_ps(p + (4 + q) * hw + 4 * k));
            v = _mm512_mask_broadcast_f32x4(v, 0x0f00, _mm_loadu_ps(p + (8 + q) * hw + 4 * k));
            r[4 * k + q] = _mm512_mask_broadcast_f32x4(v, 0xf000, _mm_loadu_ps(p + (12 + q) * hw + 4 * k));
        }
    for (int k = 0; k < 4; k++) { /* then r'[4k + m] is position 4k + m's 16 channels */
        const __m512 a = _mm512_unpacklo_ps(r[4 * k], r[4 * k + 1]), b = _mm512_unpackhi_ps(r[4 * k], r[4 * k + 1]),
                     c = _mm512_unpacklo_ps(r[4 * k + 2], r[4 * k + 3]),
                     d = _mm512_unpackhi_ps(r[4 * k + 2], r[4 * k + 3]);
        r[4 * k] = _mm512_shuffle_ps(a, c, 0x44);
        r[4 * k + 1] = _mm512_shuffle_ps(a, c, 0xee);
        r[4 * k + 2] = _mm512_shuffle_ps(b, d, 0x44);
        r[4 * k + 3] = _mm512_shuffle_ps(b, d, 0xee);
    }
    for (int j = 0; j < 8; j++) /* positions 2j and 2j + 1 in one 64-byte store */
        _mm512_storeu_si512((void *)(out + 32 * j), (__m512i)_mm512_cvtne2ps_pbh(r[2 * j + 1], r[2 * j]));
}

/* tile16 for `left` (< 16 or not) positions of `rows` (≤ 16) channels, the others zero, by masked
 * loads and a 16x16 transpose from whole rows: the last block of channels past a multiple of 16. */
__attribute__((target("avx512f,avx512bf16"))) static void tile_part(uint16_t *out, const float *p, int64_t hw,
                                                                     int64_t rows, int64_t left) {
    const __mmask16 m = (__mmask16)((1u << left) - 1);
    __m512 r[16], t[16];
    for (int c = 0; c < 16; c++) r[c] = c < rows ? _mm512_maskz_loadu_ps(m, p + c * hw) : _mm512_setzero_ps();
    for (int i = 0; i < 8; i++) { /* after the four stages r[k] holds position k of the 16 channels */
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) {
            t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
            t[8 * i + 4 + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0xdd);
        }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
    }
    uint16_t tail[16 * 16];
    for (int j = 0; j < 8; j++)
        _mm512_storeu_si512((void *)(tail + 32 * j), (__m512i)_mm512_cvtne2ps_pbh(r[2 * j + 1], r[2 * j]));
    memcpy(out, tail, sizeof(uint16_t) * 16 * (size_t)left);
}

/* One channel block: rows (≤ 16) channels of hw positions at src into dst[hw][16], the
 * channels from rows on zero.  A full block's last partial tile is the tile of its last 16
 * positions, which overlaps the one before with the same values. */
__attribute__((target("avx512f,avx512bf16"))) static void block16(uint16_t *restrict dst, const float *restrict src,
                                                                   int64_t rows, int64_t hw) {
    if (rows == 16 && hw >= 16) {
        for (int64_t s = 0; s < hw; s += 16) {
            const int64_t at = hw - s < 16 ? hw - 16 : s;
            tile16(dst + at * 16, src + at, hw);
        }
        return;
    }
    for (int64_t s = 0; s < hw; s += 16) tile_part(dst + s * 16, src + s, hw, rows, hw - s < 16 ? hw - s : 16);
}
#endif

bool ag__bf16_nchw16c_available(void) {
#ifdef AG_X86_INTRINSICS
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

void ag__f32_to_bf16_nchw16c(uint16_t *dst, const float *src, int64_t n, int64_t c, int64_t hw, int threads) {
#ifdef AG_X86_INTRINSICS
    const int64_t cb = ag__ceil_div(c, 16), units = n * cb;
    const int nt = omp_in_parallel() || units < 2 ? 1 : threads;
    AG_PARALLEL_FOR(nt, schedule(static), for (int64_t u = 0; u < units; u++) {
        const int64_t img = u / cb, b = u % cb, rows = c - b * 16 < 16 ? c - b * 16 : 16;
        block16(dst + u * hw * 16, src + (img * c + b * 16) * hw, rows, hw);
    });
#else
    (void)dst, (void)src, (void)n, (void)c, (void)hw, (void)threads;
#endif
}

/*
 * core/autocast.c - autocast regions (torch.autocast("cpu", dtype=torch.bfloat16)).
 *
 * The state is one per-thread byte, ag__autocast: 0 (off) or AG_AUTOCAST_BF16.
 * Each begin pushes the state it found on a per-thread stack and its end pops it
 * back, so regions nest like Python's with-blocks.  The kernels that honour it
 * (ops/matmul.c's products, core/dnnl_conv.c's convolutions) convert their float32
 * operands to bfloat16 inside the kernel and write float32 results: no tensor ever
 * has a bf16 dtype (docs/mixed-precision.md says why).
 */
#include <omp.h>
#include <string.h>
#include "core/autocast.h"
#include "core/parallel.h"
#include "core/sum.h"

_Thread_local uint8_t ag__autocast;
atomic_int ag__autocast_users;

#define AUTOCAST_DEPTH 64
static _Thread_local uint8_t saved[AUTOCAST_DEPTH];
static _Thread_local int depth;

ag_status ag_autocast_begin(ag_autocast_dtype dtype, bool enabled) {
    if (depth == AUTOCAST_DEPTH)
        return ag__fail(AG_ERR_ARG, "autocast_begin: autocast regions nested more than %d deep; nothing was opened",
                        AUTOCAST_DEPTH);
    saved[depth++] = ag__autocast;
    atomic_fetch_add_explicit(&ag__autocast_users, 1, memory_order_relaxed); /* before the state can be nonzero */
    if (dtype != AG_AUTOCAST_BF16) {
        ag__autocast = 0; /* as PyTorch: an unsupported dtype disables autocast in the region */
        return ag__fail(AG_ERR_DTYPE,
                        "autocast_begin: dtype %d is not supported on the CPU (only AG_AUTOCAST_BF16); "
                        "autocast is off in this region",
                        (int)dtype);
    }
    ag__autocast = enabled ? (uint8_t)dtype : 0;
    return AG_OK;
}

ag_status ag_autocast_end(void) {
    if (!depth)
        return ag__fail(AG_ERR_ARG, "autocast_end: no autocast region is open on this thread");
    ag__autocast = saved[--depth];
    atomic_fetch_sub_explicit(&ag__autocast_users, 1, memory_order_relaxed); /* after it is back */
    return AG_OK;
}

bool ag_is_autocast_enabled(void) { return ag__autocast != 0; }

/* Round to nearest even: add 0x7fff plus the lowest kept bit, keep the high half;
 * a NaN keeps a set quiet bit so that rounding cannot make it infinite. */
static inline uint16_t bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(u >> 16 | 0x40);
    return (uint16_t)((u + 0x7fffu + (u >> 16 & 1)) >> 16);
}

/* dst[i] = bf16_of(src[i]) for i < n, vectorised (AVX2 where the CPU has it: 8 lanes
 * of integer arithmetic and a blend, the same bits as the scalar rule). */
AG_VEC_CLONES static void convert(uint16_t *restrict dst, const float *restrict src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_of(src[i]);
}

void ag__f32_to_bf16(uint16_t *dst, const float *src, int64_t n) {
    const int nt = n >= AG_PAR_MIN_ELEMS && !omp_in_parallel() ? omp_get_max_threads() : 1;
    if (nt <= 1) {
        convert(dst, src, n);
        return;
    }
#pragma omp parallel num_threads(nt)
    { /* split over the team granted, which OMP_DYNAMIC or OMP_THREAD_LIMIT may make smaller than nt */
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        const int64_t lo = ag__share_start(n, t, used), hi = ag__share_start(n, t + 1, used);
        convert(dst + lo, src + lo, hi - lo);
    }
}

void ag__f32_to_bf16_2d(uint16_t *dst, const float *src, int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
    if (cs == 1 && rs == cols) {
        ag__f32_to_bf16(dst, src, rows * cols);
        return;
    }
    const int nt = rows * cols >= AG_PAR_MIN_ELEMS && rows > 1 && !omp_in_parallel() ? omp_get_max_threads() : 1;
    AG_PARALLEL_FOR(nt, schedule(static), for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < cols; j++) dst[i * cols + j] = bf16_of(src[i * rs + j * cs]);
    });
}

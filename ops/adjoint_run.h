/*
 * ops/adjoint_run.h - one contiguous run of an elementwise adjoint, in blocks that prefetch dy where the
 * run leaves L2: ops/unary.c's and ops/binary.c's backward kernels.
 *
 * gcc's AVX-512 clones of the adjoints that take dy in some lanes only (hardswish, clamp, relu: `x < a ?
 * 0 : dy`; maximum, minimum, heaviside's db, pow's) read dy by loads masked by compares on the other
 * operands (`vmovups (dy){k}{z}`): a masked load waits for its mask, so beyond L2 dy's miss starts only
 * after the other operands' lines came.  Runs of AG_ADJ_PREFETCH_MIN bytes or more therefore go in blocks
 * of AG_ADJ_BLOCK bytes, each first prefetching dy's lines AG_ADJ_AHEAD bytes past its start (hardswish's
 * adjoint alone, 4 Mi floats, one thread: 2.4-2.6 -> 1.6 ms; maximum [2048, 2048] forward + backward
 * 6.6 -> 5.3 ms; docs/benchmarks.md, session 22, maps22 and mask22).  The loop inside a block is the
 * unblocked loop: the same arithmetic, the same bits; shorter runs keep one loop.
 */
#ifndef AGRAD_ADJOINT_RUN_H
#define AGRAD_ADJOINT_RUN_H

#include <stdint.h>

#define AG_ADJ_PREFETCH_MIN ((int64_t)2 << 20)
#define AG_ADJ_BLOCK ((int64_t)2048)
#define AG_ADJ_AHEAD ((int64_t)4096)

/* for (I = 0; I < n; I++) { the statements after I } over a run of n elements of type T, in blocks that
 * prefetch dy (a const T *) when BLOCKS is true and the run is AG_ADJ_PREFETCH_MIN bytes or more */
#define AG_ADJ_RUN(T, n, dy, BLOCKS, I, ...)                                                        \
    do {                                                                                            \
        const int64_t blk_ = (BLOCKS) && (n) * (int64_t)sizeof(T) >= AG_ADJ_PREFETCH_MIN            \
                                 ? AG_ADJ_BLOCK / (int64_t)sizeof(T)                               \
                                 : (n);                                                             \
        const int64_t ahead_ = AG_ADJ_AHEAD / (int64_t)sizeof(T);                                   \
        for (int64_t i0_ = 0; i0_ < (n); i0_ += blk_) {                                             \
            const int64_t end_ = (n) - i0_ < blk_ ? (n) : i0_ + blk_;                               \
            if (blk_ < (n) && i0_ + ahead_ + blk_ <= (n))                                           \
                for (int64_t j_ = i0_ + ahead_; j_ < i0_ + ahead_ + blk_; j_ += 64 / (int64_t)sizeof(T)) \
                    __builtin_prefetch((dy) + j_);                                                  \
            for (int64_t I = i0_; I < end_; I++) {                                                  \
                __VA_ARGS__                                                                         \
            }                                                                                       \
        }                                                                                           \
    } while (0)

#endif

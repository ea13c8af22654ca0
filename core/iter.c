/*
 * core/iter.c - the strided, broadcasting element walker every elementwise kernel
 * and reduction uses, plus broadcasting helpers.
 */
#include <omp.h>
#include <string.h>
#ifdef __x86_64__
#include <immintrin.h>
#endif
#include "core/copy_bytes.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "core/tr8x8.h"

void ag__iter_init(ag_iter *it, int ndim, const int64_t *shape) {
    it->ndim = ndim;
    it->nops = 0;
    it->all_flat = true;
    it->numel = 1;
    for (int d = 0; d < ndim; d++) {
        it->shape[d] = shape[d];
        it->numel *= shape[d];
    }
}

/* Strides of operand k over the iteration shape. */
__attribute__((noinline)) static void fill_strides(ag_iter *it, int k, const ag_tensor *t, uint64_t reduced_mask) {
    int64_t es = it->esize[k];
    int lead = it->ndim - t->ndim;
    for (int d = 0; d < it->ndim; d++) {
        int td = d - lead;
        /* a dim of size 1 is read at index 0 only, one of size 0 never, and nothing at all of
         * an empty iteration: its stride, which may be huge (a slice with a huge step, a
         * dim beside a 0), is never multiplied out */
        bool zero = td < 0 || (reduced_mask >> d & 1) || t->shape[td] <= 1 || it->numel == 0;
        it->stride[k][d] = zero ? 0 : t->stride[td] * es;
    }
}

/* The first operand that is not flat arrived: the k flat operands before it get strides. */
__attribute__((noinline)) static void flat_strides(ag_iter *it, int k) {
    it->all_flat = false;
    for (int j = 0; j < k; j++) {
        int64_t s = it->kind[j] == AG_ITER_CONST ? 0 : it->esize[j];
        for (int d = it->ndim - 1; d >= 0; d--) {
            it->stride[j][d] = it->shape[d] == 1 ? 0 : s;
            if (it->kind[j] == AG_ITER_CONTIG) s *= it->shape[d];
        }
    }
}

/* Classifies t: contiguous with the iteration shape, constant, or neither. */
static int operand_kind(const ag_iter *it, const ag_tensor *t, uint64_t reduced_mask) {
    if (t->ndim == it->ndim && reduced_mask == 0) {
        int64_t s = 1;
        int d = t->ndim - 1;
        for (; d >= 0; d--) {
            if (t->shape[d] != it->shape[d] || (t->shape[d] != 1 && t->stride[d] != s)) break;
            s *= t->shape[d];
        }
        if (d < 0) return AG_ITER_CONTIG;
    }
    /* Constant: every dim of t is reduced, broadcast or of size 1. */
    int lead = it->ndim - t->ndim;
    for (int td = 0; td < t->ndim; td++)
        if (t->shape[td] != 1 && !(reduced_mask >> (td + lead) & 1)) return AG_ITER_STRIDED;
    return AG_ITER_CONST;
}

void ag__iter_add_reduced(ag_iter *it, const ag_tensor *t, uint64_t reduced_mask) {
    int k = it->nops++;
    it->esize[k] = (int64_t)ag__esize(t->dtype);
    it->base[k] = ag__ptr(t);
    it->kind[k] = operand_kind(it, t, reduced_mask);
    if (it->kind[k] == AG_ITER_STRIDED) {
        if (it->all_flat) flat_strides(it, k);
        fill_strides(it, k, t, reduced_mask);
    } else if (!it->all_flat) {
        fill_strides(it, k, t, it->kind[k] == AG_ITER_CONST ? ~(uint64_t)0 : 0);
    }
}

void ag__iter_add(ag_iter *it, const ag_tensor *t) { ag__iter_add_reduced(it, t, 0); }

/* Walks dims [0, nd) of the merged geometry, dim 0 only over [lo, hi). */
static void walk(int nd, const int64_t *shape, int64_t (*stride)[AG_MAX_DIMS], int nops, char *const *base,
                 int64_t lo, int64_t hi, ag_inner_fn fn, void *ctx) {
    char *p[AG_ITER_MAX];
    int64_t step[AG_ITER_MAX];
    for (int k = 0; k < nops; k++) {
        p[k] = base[k] + lo * stride[k][0];
        step[k] = stride[k][nd - 1];
    }
    if (nd == 1) {
        fn(p, step, hi - lo, ctx);
        return;
    }
    /* Odometer over the outer dims. */
    int64_t idx[AG_MAX_DIMS] = {0};
    idx[0] = lo;
    int64_t inner = shape[nd - 1];
    for (;;) {
        fn(p, step, inner, ctx);
        int d = nd - 2;
        for (; d >= 0; d--) {
            idx[d]++;
            for (int k = 0; k < nops; k++) p[k] += stride[k][d];
            if (idx[d] < (d == 0 ? hi : shape[d])) break;
            if (d == 0) return;
            for (int k = 0; k < nops; k++) p[k] -= stride[k][d] * shape[d];
            idx[d] = 0;
        }
    }
}

/* ---- packed tiles: pure maps over operands laid out across the output ---------------------------------
 * A pure elementwise map (ag__iter_run_par) may visit its elements in any order.  Its dims are put in the
 * order of operand 0's strides (the innermost the smallest, as PyTorch's TensorIterator does), so the output
 * is written in runs; an input whose run is strided (a transposed view: stride N along the output's rows)
 * is then copied tile by tile, up to PACK_ROWS x PACK_COLS elements, into a contiguous buffer, reading along
 * its own contiguous dim, and the kernel runs on the buffer's rows with unit steps (its vectorised path)
 * instead of byte-strided scalar loads that touch a cache line per element.  The copy moves bits
 * (unsigned integers of the element's size): the results are the same bits as the strided walk's.
 * Where an operand is read transposed, a tile has as many rows as the scratch holds for the packed
 * operands, up to 64: the input is read in runs of that many elements (256 bytes of float32, four cache
 * lines of one page) instead of runs of 16 (one line, a new page per line).
 * Those runs lie a page or more apart, where the hardware prefetchers do not follow (they stop at a page's
 * end, and a stride above 2 KiB is not learnt): each run is prefetched PACK_AHEAD runs before it is read,
 * reaching into the next tile of the strip, and the output rows' next segments (up to 64 rows, more streams
 * than the L2 streamer tracks) are prefetched for writing one tile ahead.  A transposed [2048, 2048] abs,
 * one thread: 7.5 -> 4.9 ms (contiguous: 3.2).  Only where the operands' bytes reach PREFETCH_MIN: below
 * it they come from the caches (L2, L3), where the prefetch loops are instructions that buy nothing
 * (transposed [512, 512] abs, one thread, forward 51 -> 45 µs, forward + backward 139 -> 117). */
enum { PACK_ROWS = 64, PACK_COLS = 128, PACK_LD = PACK_COLS + 16, PACK_MIN = 4096, PACK_AHEAD = 32,
       PACK_SCRATCH = AG_ITER_MAX * 16 * PACK_LD * 8 }; /* 108 KiB on the stack: 16 rows of 6 float64 operands */
/* Outputs of more bytes than this, written in rows by a transposed walk, are streamed (see stream_row). */
#define STREAM_MIN ((int64_t)8 << 20)
/* Walks whose operands (the output's bytes and the inputs') total fewer bytes than this prefetch nothing:
 * measured on one thread, transposed [768, 768] abs forward 113-123 -> 108-112 µs, add of two 168-180
 * against 214-231 with the prefetches, [1024, 1024] abs (8 MiB) forward + backward 824-870 with them
 * against 1 091-1 141 without (docs/benchmarks.md, session 16). */
#define PREFETCH_MIN ((int64_t)8 << 20)

/* Prefetches the run of len bytes at p (every cache line of it) for reading, or for writing when w. */
static inline void prefetch_run(const char *p, int64_t len, bool w) {
    for (int64_t o = 0; o < len; o += 64) w ? __builtin_prefetch(p + o, 1, 3) : __builtin_prefetch(p + o, 0, 3);
    w ? __builtin_prefetch(p + len - 1, 1, 3) : __builtin_prefetch(p + len - 1, 0, 3);
}
/* In the transposed case, before reading column j of a tile: the run PACK_AHEAD columns on, if the strip
 * has it (avail: the tile's columns and those after it in its strip; 0 where the walk prefetches nothing). */
#define PACK_PREFETCH(j)                                                                        \
    if ((j) + PACK_AHEAD < avail) prefetch_run(src + ((j) + PACK_AHEAD) * cs, rows * rs, false)

/* rows x cols elements of es bytes at src (byte strides rs between rows, cs along a row) into buf, row
 * after row; read along rows when they are contiguous in src (the transposed case), backwards along a row
 * when it is reversed (a flip), else along cols. */
#define PACK_LOOP(T)                                                                            \
    do {                                                                                        \
        T *restrict b = (T *)buf;                                                               \
        if (rs == (int64_t)sizeof(T)) {                                                         \
            for (int64_t j = 0; j < cols; j++) {                                                \
                PACK_PREFETCH(j);                                                               \
                for (int64_t r = 0; r < rows; r++) b[r * PACK_LD + j] = ((const T *)(src + j * cs))[r]; \
            }                                                                                   \
        } else if (cs == -(int64_t)sizeof(T)) {                                                 \
            for (int64_t r = 0; r < rows; r++) {                                                \
                const T *a = (const T *)(src + r * rs);                                         \
                for (int64_t j = 0; j < cols; j++) b[r * PACK_LD + j] = a[-j];                  \
            }                                                                                   \
        } else {                                                                                \
            for (int64_t r = 0; r < rows; r++)                                                  \
                for (int64_t j = 0; j < cols; j++) b[r * PACK_LD + j] = *(const T *)(src + r * rs + j * cs); \
        }                                                                                       \
    } while (0)
/* The output's tile buf (rows x cols elements of es bytes, row after row) into dst, whose rows are
 * contiguous (element (r, j) at dst + r·es + j·cs): each column of buf is written as one run of dst. */
#define UNPACK_LOOP(T)                                                                          \
    do {                                                                                        \
        const T *restrict b = (const T *)buf;                                                   \
        for (int64_t j = 0; j < cols; j++) {                                                    \
            T *d = (T *)(dst + j * cs);                                                         \
            for (int64_t r = 0; r < rows; r++) d[r] = b[r * PACK_LD + j];                       \
        }                                                                                       \
    } while (0)
#ifdef AG_X86_INTRINSICS
/* The transposed cases on AVX2, for elements of T (B x B blocks through TR, core/tr8x8.h): pack_SUF reads B
 * columns at a time down all the rows (B runs of src read in order, each from its page), unpack_SUF writes
 * B columns of buf at a time into B runs of dst; the edges element by element. */
#define TRANSPOSED_TILES(SUF, T, B, TR)                                                                        \
    __attribute__((target("avx2"))) static void pack_##SUF(char *restrict buf, const char *src, int64_t rows,  \
                                                           int64_t cols, int64_t cs, int64_t avail) {          \
        const int64_t rb = rows / (B) * (B), cb = cols / (B) * (B), rs = sizeof(T), ld = PACK_LD * sizeof(T);  \
        for (int64_t j = 0; j < cb; j += (B)) {                                                                \
            for (int k = 0; k < (B); k++) PACK_PREFETCH(j + k);                                                \
            for (int64_t r = 0; r < rb; r += (B)) TR(src + j * cs + r * rs, cs, buf + r * ld + j * rs, ld);    \
        }                                                                                                      \
        T *b = (T *)buf;                                                                                       \
        for (int64_t r = 0; r < rows; r++) /* the edges */                                                     \
            for (int64_t j = r < rb ? cb : 0; j < cols; j++) b[r * PACK_LD + j] = ((const T *)(src + j * cs))[r]; \
    }                                                                                                          \
    __attribute__((target("avx2"))) static void unpack_##SUF(char *dst, const char *restrict buf, int64_t rows, \
                                                             int64_t cols, int64_t cs) {                       \
        const int64_t rb = rows / (B) * (B), cb = cols / (B) * (B), rs = sizeof(T), ld = PACK_LD * sizeof(T);  \
        for (int64_t j = 0; j < cb; j += (B))                                                                  \
            for (int64_t r = 0; r < rb; r += (B)) TR(buf + r * ld + j * rs, ld, dst + j * cs + r * rs, cs);    \
        const T *b = (const T *)buf;                                                                           \
        for (int64_t r = 0; r < rows; r++) /* the edges */                                                     \
            for (int64_t j = r < rb ? cb : 0; j < cols; j++) ((T *)(dst + j * cs))[r] = b[r * PACK_LD + j];    \
    }
TRANSPOSED_TILES(t8, uint8_t, 16, tr16x16_u8)
TRANSPOSED_TILES(t32, uint32_t, 8, tr8x8)
TRANSPOSED_TILES(t64, uint64_t, 4, tr4x4_64)

/* A copy's transposed tile straight into the output, for elements of T: dst (rows contiguous there, ds bytes
 * between rows, unit step along a row) gets element (r, j) of src (unit step along its rows, cs bytes along
 * a row), B x B blocks through TR read as pack_SUF reads them (the same prefetches) and written where
 * unpack_SUF would write them, with no tile buffer and no kernel call a row between (see walk_packed). */
#define TRANSPOSED_COPY(SUF, T, B, TR)                                                                         \
    __attribute__((target("avx2"))) static void tcopy_##SUF(char *dst, int64_t ds, const char *src, int64_t rows, \
                                                            int64_t cols, int64_t cs, int64_t avail) {          \
        const int64_t rb = rows / (B) * (B), cb = cols / (B) * (B), rs = sizeof(T);                            \
        for (int64_t j = 0; j < cb; j += (B)) {                                                                \
            for (int k = 0; k < (B); k++) PACK_PREFETCH(j + k);                                                \
            for (int64_t r = 0; r < rb; r += (B)) TR(src + j * cs + r * rs, cs, dst + r * ds + j * rs, ds);    \
        }                                                                                                      \
        for (int64_t r = 0; r < rows; r++) /* the edges */                                                     \
            for (int64_t j = r < rb ? cb : 0; j < cols; j++)                                                   \
                ((T *)(dst + r * ds))[j] = ((const T *)(src + j * cs))[r];                                     \
    }
TRANSPOSED_COPY(t32, uint32_t, 8, tr8x8)
TRANSPOSED_COPY(t64, uint64_t, 4, tr4x4_64)
#endif

/* Packs a tile; avail as PACK_PREFETCH's. */
static void pack_tile(char *restrict buf, const char *src, int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                      int64_t es, int64_t avail) {
#ifdef AG_X86_INTRINSICS
    if (rs == es && es != 2 && AG_VEC_WIDE()) {
        (es == 1 ? pack_t8 : es == 4 ? pack_t32 : pack_t64)(buf, src, rows, cols, cs, avail);
        return;
    }
#endif
    switch (es) {
    case 1: PACK_LOOP(uint8_t); break;
    case 2: PACK_LOOP(uint16_t); break;
    case 4: PACK_LOOP(uint32_t); break;
    default: PACK_LOOP(uint64_t); break; /* es is 8: the iterator's dtypes are 1, 2, 4 or 8 bytes */
    }
}

/* Writes the output's tile buf into dst (rows contiguous there, cs bytes between columns). */
static void unpack_tile(char *dst, const char *restrict buf, int64_t rows, int64_t cols, int64_t cs, int64_t es) {
#ifdef AG_X86_INTRINSICS
    if (es != 2 && AG_VEC_WIDE()) {
        (es == 1 ? unpack_t8 : es == 4 ? unpack_t32 : unpack_t64)(dst, buf, rows, cols, cs);
        return;
    }
#endif
    switch (es) {
    case 1: UNPACK_LOOP(uint8_t); break;
    case 2: UNPACK_LOOP(uint16_t); break;
    case 4: UNPACK_LOOP(uint32_t); break;
    default: UNPACK_LOOP(uint64_t); break;
    }
}

/* The output's rows of a large transposed walk, written a row at a time from the scratch: the 32-byte
 * aligned whole vectors with streaming stores, which write whole lines without reading them first (no read
 * for ownership; the write-combining buffers join the two halves of a line), the ends with ordinary
 * stores.  The output is written once and read after the op: its lines in cache would only evict others.
 * A transposed [2048, 2048] float32 abs, one thread: the output's reads for ownership were a third of the
 * traffic (see docs/benchmarks.md, session 14).  The walk ends with stream_fence (the stores are weakly
 * ordered). */
#ifdef AG_X86_INTRINSICS
__attribute__((target("avx2"))) static void stream_row(char *dst, const char *restrict src, int64_t len) {
    int64_t i = (int64_t)(-(uintptr_t)dst & 31);
    if (i > len) i = len;
    memcpy(dst, src, (size_t)i);
    for (; i + 32 <= len; i += 32) _mm256_stream_si256((__m256i *)(dst + i), _mm256_loadu_si256((const __m256i *)(src + i)));
    memcpy(dst + i, src + i, (size_t)(len - i));
}
static void stream_fence(void) { _mm_sfence(); }
#define STREAMS() AG_VEC_WIDE()
#else
static void stream_row(char *dst, const char *restrict src, int64_t len) { memcpy(dst, src, (size_t)len); }
static void stream_fence(void) {}
#define STREAMS() false
#endif

/* The copy kernels of one dtype to itself (below), whose transposed walks may skip the tile buffer. */
static void copy_f32_f32(char **p, const int64_t *s, int64_t n, void *ctx);
static void copy_f64_f64(char **p, const int64_t *s, int64_t n, void *ctx);
static void copy_i64_i64(char **p, const int64_t *s, int64_t n, void *ctx);

/* Whether walk_packed copies its tiles straight from the input into the output (tcopy_SUF): fn moves the
 * bits of 4- or 8-byte elements unchanged (a same-dtype copy: ag__copy_into, ag__contig_or_copy), the one
 * input is the one packed operand, read transposed (unit step down the tiles' rows), the output's rows are
 * contiguous and not streamed.  Then the tile goes from registers to the output: one pass over the data
 * instead of three (the input into the buffer, the kernel's memmove of each buffer row into the output).
 * A [444, 592] float32 gradient from a transposed view (permute's adjoint into .grad), one thread: the
 * copy alone 46-49 -> 33-38 µs (a standalone loop), permute's forward + backward 55 -> 40 (agrad-bench,
 * five pairs; docs/benchmarks.md, session 21). */
static bool direct_copy(ag_inner_fn fn, int nops, unsigned packed, int64_t (*stride)[AG_MAX_DIMS], const int64_t *esize,
                        int bd, int id, bool stream) {
#ifdef AG_X86_INTRINSICS
    return nops == 2 && packed == 2u && !stream && (fn == copy_f32_f32 || fn == copy_f64_f64 || fn == copy_i64_i64) &&
           stride[1][bd] == esize[1] && stride[0][id] == esize[0] && AG_VEC_WIDE();
#else
    (void)fn, (void)nops, (void)packed, (void)stride, (void)esize, (void)bd, (void)id, (void)stream;
    return false;
#endif
}

atomic_long ag__direct_copy_walks;

/* walk for the packed operands (bit k of packed: operand k goes through a tile buffer; for operand 0,
 * the output, the kernel writes the buffer and unpack_tile writes it out): dims [0, nd - 2) by odometer
 * (dim 0 over [lo, hi) when nd > 2), dim nd - 2 in blocks of as many rows as the scratch holds (over
 * [lo, hi) when nd == 2), dim nd - 1 in blocks of PACK_COLS.  An output of out_bytes >= STREAM_MIN written
 * in rows by a transposed walk goes through one scratch row and stream_row; a transposed walk prefetches
 * where all_bytes (every operand's) >= PREFETCH_MIN. */
static void walk_packed(int nd, const int64_t *shape, int64_t (*stride)[AG_MAX_DIMS], int nops, char *const *base,
                        const int64_t *esize, unsigned packed, int64_t out_bytes, int64_t all_bytes, int64_t lo, int64_t hi,
                        ag_inner_fn fn, void *ctx) {
    _Alignas(64) char scratch[PACK_SCRATCH + PACK_LD * 8]; /* the tiles, then the streamed row */
    const int bd = nd - 2, id = nd - 1;
    const int64_t r0 = bd == 0 ? lo : 0, r1 = bd == 0 ? hi : shape[bd];
    char *o[AG_ITER_MAX], *buf[AG_ITER_MAX];
    int64_t idx[AG_MAX_DIMS] = {0}, step[AG_ITER_MAX], row_bytes = 0;
    bool transposed = false;
    for (int k = 0; k < nops; k++)
        if (packed >> k & 1) {
            row_bytes += PACK_LD * esize[k];
            transposed |= stride[k][bd] == esize[k];
        }
    /* 16 or more (see PACK_SCRATCH); 16 where no tile is read transposed (a flip: longer blocks of
     * rows only spread its reads and writes over more pages, 5.4 -> 9.8 ms for a [2048, 2048]) */
    int64_t block = transposed ? PACK_SCRATCH / row_bytes / 8 * 8 : 16;
    if (block > PACK_ROWS) block = PACK_ROWS;
    for (int k = 0, used = 0; k < nops; k++) {
        o[k] = base[k] + (bd > 0 ? lo * stride[k][0] : 0);
        buf[k] = packed >> k & 1 ? scratch + used : NULL;
        if (buf[k]) used += (int)(block * PACK_LD * esize[k]);
        step[k] = buf[k] ? esize[k] : stride[k][id];
    }
    const bool ahead = transposed && all_bytes >= PREFETCH_MIN; /* prefetch the runs */
    const bool stream = transposed && !buf[0] && stride[0][id] == esize[0] && out_bytes >= STREAM_MIN && STREAMS();
    if (stream) step[0] = esize[0];
    const bool direct = direct_copy(fn, nops, packed, stride, esize, bd, id, stream);
    if (direct) atomic_fetch_add_explicit(&ag__direct_copy_walks, 1, memory_order_relaxed);
    idx[0] = bd > 0 ? lo : 0;
    for (;;) {
        for (int64_t r = r0; r < r1; r += block) {
            const int64_t rows = r1 - r < block ? r1 - r : block;
            for (int64_t c = 0; c < shape[id]; c += PACK_COLS) {
                const int64_t cols = shape[id] - c < PACK_COLS ? shape[id] - c : PACK_COLS;
                char *t[AG_ITER_MAX], *p[AG_ITER_MAX];
                /* the columns of the next tile along this strip, whose runs are prefetched */
                const int64_t next = shape[id] - c - cols < PACK_COLS ? shape[id] - c - cols : PACK_COLS;
                if (direct) { /* a copy: the input's tile transposed into the output's */
#ifdef AG_X86_INTRINSICS
                    char *d = o[0] + r * stride[0][bd] + c * esize[0];
                    const char *src = o[1] + r * esize[1] + c * stride[1][id];
                    (esize[0] == 4 ? tcopy_t32 : tcopy_t64)(d, stride[0][bd], src, rows, cols, stride[1][id], ahead ? cols + next : 0);
#endif
                    continue;
                }
                for (int k = 0; k < nops; k++) {
                    t[k] = o[k] + r * stride[k][bd] + c * stride[k][id];
                    if (buf[k]) pack_tile(buf[k], t[k], rows, cols, stride[k][bd], stride[k][id], esize[k], ahead ? cols + next : 0);
                }
                for (int64_t q = 0; q < rows; q++) {
                    for (int k = 0; k < nops; k++) {
                        p[k] = buf[k] ? buf[k] + q * PACK_LD * esize[k] : t[k] + q * stride[k][bd];
                        if (ahead && next > 0 && !buf[k] && stride[k][id] == esize[k] && !(stream && k == 0))
                            prefetch_run(p[k] + cols * esize[k], next * esize[k], k == 0);
                    }
                    if (stream) p[0] = scratch + PACK_SCRATCH;
                    fn(p, step, cols, ctx);
                    if (stream) stream_row(t[0] + q * stride[0][bd], p[0], cols * esize[0]);
                }
                if (buf[0]) unpack_tile(t[0], buf[0], rows, cols, stride[0][id], esize[0]);
            }
        }
        int d = bd - 1; /* the odometer over dims [0, bd) */
        for (; d >= 0; d--) {
            idx[d]++;
            for (int k = 0; k < nops; k++) o[k] += stride[k][d];
            if (idx[d] < (d == 0 ? hi : shape[d])) break;
            if (d == 0) goto done;
            for (int k = 0; k < nops; k++) o[k] -= stride[k][d] * shape[d];
            idx[d] = 0;
        }
        if (d < 0) break; /* nd == 2: one block row range */
    }
done:
    if (stream) stream_fence();
}

/* The bytes [lo, hi) operand k spans over the merged geometry. */
static void span_of(int nd, const int64_t *shape, int64_t (*stride)[AG_MAX_DIMS], char *const *base,
                    const int64_t *esize, int k, uintptr_t *lo, uintptr_t *hi) {
    intptr_t a = 0, b = 0;
    for (int d = 0; d < nd; d++) {
        intptr_t e = (intptr_t)(stride[k][d] * (shape[d] - 1));
        if (e < 0) a += e;
        else b += e;
    }
    *lo = (uintptr_t)base[k] + (uintptr_t)a;
    *hi = (uintptr_t)base[k] + (uintptr_t)b + (uintptr_t)esize[k];
}

/* Merges dim d into d - 1 where every operand is contiguous across them (in place; returns the new nd). */
static int merge_dims(int nd, int64_t *shape, int64_t (*stride)[AG_MAX_DIMS], int nops) {
    int m = 0;
    for (int d = 0; d < nd; d++) {
        if (m > 0) {
            bool merge = true;
            for (int k = 0; k < nops; k++)
                if (stride[k][m - 1] != stride[k][d] * shape[d]) merge = false;
            if (merge) {
                shape[m - 1] *= shape[d];
                for (int k = 0; k < nops; k++) stride[k][m - 1] = stride[k][d];
                continue;
            }
        }
        shape[m] = shape[d];
        for (int k = 0; k < nops; k++) stride[k][m] = stride[k][d];
        m++;
    }
    return m;
}

/* Moves dim from to position to (the dims between shift by one). */
static void move_dim(int64_t *shape, int64_t (*stride)[AG_MAX_DIMS], int nops, int from, int to) {
    const int64_t sh = shape[from];
    int64_t st[AG_ITER_MAX];
    for (int k = 0; k < nops; k++) st[k] = stride[k][from];
    for (int d = from; d != to; d += to > from ? 1 : -1) {
        int n = to > from ? d + 1 : d - 1;
        shape[d] = shape[n];
        for (int k = 0; k < nops; k++) stride[k][d] = stride[k][n];
    }
    shape[to] = sh;
    for (int k = 0; k < nops; k++) stride[k][to] = st[k];
}

static int64_t mag(int64_t v) { return v < 0 ? -v : v; }
/* The sort key of an input's stride when the walk follows that input: a stride 0 (a broadcast dim) goes
 * outermost, so that it never takes a dim the input runs along from the inner loop. */
static int64_t mag_zero_outer(int64_t v) { return v == 0 ? INT64_MAX : mag(v); }

/* Sorts the dims by operand k's strides, largest first (by key), and merges them again; returns the new nd. */
static int order_by_key(int nd, int64_t *shape, int64_t (*stride)[AG_MAX_DIMS], int nops, int k, int64_t (*key)(int64_t)) {
    for (int d = 1; d < nd; d++) /* insertion sort: stable, nd <= AG_MAX_DIMS */
        for (int e = d; e > 0 && key(stride[k][e - 1]) < key(stride[k][e]); e--) move_dim(shape, stride, nops, e, e - 1);
    return merge_dims(nd, shape, stride, nops);
}
static int order_by(int nd, int64_t *shape, int64_t (*stride)[AG_MAX_DIMS], int nops, int k) {
    return order_by_key(nd, shape, stride, nops, k, mag);
}

/* The inputs (bit k) whose innermost run is strided over the geometry (packing candidates), and in
 * *overlap whether any input's bytes overlap the output's.  A reversed run (step -esize: flip's copy,
 * the one source of negative strides) is not one: the copy kernels read it backwards in place, a loop
 * that vectorises (flip of a [2048, 2048] along its last dim, one thread: 2.0-3.8 -> 1.5-2.9 ms). */
static unsigned strided_inputs(int nd, const int64_t *shape, int64_t (*stride)[AG_MAX_DIMS], int nops,
                               char *const *base, const int64_t *esize, bool *overlap) {
    uintptr_t out_lo, out_hi;
    span_of(nd, shape, stride, base, esize, 0, &out_lo, &out_hi);
    unsigned strided = 0;
    *overlap = false;
    for (int k = 1; k < nops; k++) {
        uintptr_t lo, hi;
        span_of(nd, shape, stride, base, esize, k, &lo, &hi);
        if (lo < out_hi && out_lo < hi) { /* overlaps the output: read it in place, as it is written */
            *overlap = true;
            continue;
        }
        const int64_t s = stride[k][nd - 1];
        if (s != 0 && s != esize[k] && s != -esize[k] && (esize[k] == 1 || esize[k] == 2 || esize[k] == 4 || esize[k] == 8))
            strided |= 1u << k;
    }
    return strided;
}

/* Moves the dim among [0, nd - 1) where operand k has its smallest nonzero stride to nd - 2 (the tiles'
 * rows). */
static void rows_dim(int nd, int64_t *shape, int64_t (*stride)[AG_MAX_DIMS], int nops, int k) {
    int best = nd - 2;
    for (int d = 0; d < nd - 1; d++)
        if (stride[k][d] != 0 && (stride[k][best] == 0 || mag(stride[k][d]) < mag(stride[k][best]))) best = d;
    move_dim(shape, stride, nops, best, nd - 2);
}

/* For a pure map over nd >= 2 merged dims: orders the dims by operand 0's strides, largest first (and
 * merges again), then returns the operands to pack (bit k), having moved the contiguous dim of the first
 * of them next to the innermost; 0 when none needs it.  Where two or more inputs would be packed and
 * they share one layout (add of two transposed operands), the walk follows the first of them instead:
 * the inputs are then read in runs, the kernel writes the output's tile into a buffer, and that tile is
 * transposed into the output (bit 0: one transposition instead of two), when that packs fewer operands,
 * no input overlaps the output and the output has at most UNPACK_MAX bytes.  Writes in short runs across
 * pages cost more than such reads once the output's lines come from memory: add of two transposed
 * float32 operands, one thread, [512, 512] 226-258 -> 193-208 µs, [1024, 1024] 1 100-1 116 -> 982-1 022,
 * but [2048, 2048] (16 MiB) 5 340-5 850 -> 5 700-6 290. */
enum { UNPACK_MAX = 4 << 20 };
static unsigned plan_packing(int *nd, int64_t *shape, int64_t (*stride)[AG_MAX_DIMS], int nops, char *const *base,
                             const int64_t *esize, int64_t numel) {
    *nd = order_by(*nd, shape, stride, nops, 0);
    if (*nd < 2 || numel < PACK_MIN || stride[0][*nd - 1] != esize[0]) return 0;
    bool overlap;
    unsigned packed = strided_inputs(*nd, shape, stride, nops, base, esize, &overlap);
    if (!packed) return 0;
    const int first = __builtin_ctz(packed);
    if (__builtin_popcount(packed) >= 2 && !overlap && numel <= UNPACK_MAX / esize[0]) {
        int64_t sh[AG_MAX_DIMS], st[AG_ITER_MAX][AG_MAX_DIMS];
        memcpy(sh, shape, sizeof sh);
        memcpy(st, stride, sizeof st);
        const int n = order_by(*nd, sh, st, nops, first);
        int u = -1; /* the output's contiguous dim, which becomes the tiles' rows */
        for (int d = 0; d < n - 1; d++)
            if (st[0][d] == esize[0]) u = d;
        bool o;
        const unsigned alt = u >= 0 && st[first][n - 1] == esize[first] ? strided_inputs(n, sh, st, nops, base, esize, &o) : packed;
        if (__builtin_popcount(alt) + 1 < __builtin_popcount(packed)) {
            *nd = n;
            memcpy(shape, sh, sizeof sh);
            memcpy(stride, st, sizeof st);
            move_dim(shape, stride, nops, u, n - 2);
            return alt | 1u;
        }
    }
    rows_dim(*nd, shape, stride, nops, first);
    return packed;
}

/* How run walks: in the given dim order on one thread (RUN_PLAIN), as a pure map (RUN_PAR: split over
 * threads, packed tiles), or in operand 1's memory order on one thread (RUN_INPUT_ORDER:
 * ag__iter_run_any_order). */
enum { RUN_PLAIN, RUN_PAR, RUN_INPUT_ORDER };
static void run(ag_iter *it, ag_inner_fn fn, void *ctx, int mode) {
    const bool par = mode == RUN_PAR;
    int nops = it->nops;
    if (it->all_flat) {
        if (it->numel == 0) return;
        char *p[AG_ITER_MAX];
        int64_t step[AG_ITER_MAX];
        for (int k = 0; k < nops; k++) {
            p[k] = it->base[k];
            step[k] = it->kind[k] == AG_ITER_CONST ? 0 : it->esize[k];
        }
        bool split = par && it->kind[0] != AG_ITER_CONST;
        ag__par_run(fn, ctx, it->numel, nops, p, step, split ? ag__threads_for(it->numel) : 1);
        return;
    }
    /* Drop size-1 dims and merge dim d into d+1 where every operand is contiguous across them. */
    int64_t shape[AG_MAX_DIMS], stride[AG_ITER_MAX][AG_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < it->ndim; d++) {
        if (it->shape[d] == 0) return;
        if (it->shape[d] == 1) continue;
        shape[nd] = it->shape[d];
        for (int k = 0; k < nops; k++) stride[k][nd] = it->stride[k][d];
        nd++;
    }
    nd = merge_dims(nd, shape, stride, nops);
    if (mode == RUN_INPUT_ORDER && nd >= 2 && nops >= 2) nd = order_by_key(nd, shape, stride, nops, 1, mag_zero_outer);
    if (nd == 0) {
        fn(it->base, (int64_t[AG_ITER_MAX]){0}, 1, ctx);
        return;
    }
    unsigned packed = par && nd >= 2 ? plan_packing(&nd, shape, stride, nops, it->base, it->esize, it->numel) : 0;
    const int64_t out_bytes = it->numel * it->esize[0];
    int64_t all_bytes = 0;
    for (int k = 0; k < nops; k++) all_bytes += it->numel * it->esize[k];
    /* Split dim 0 over threads when operand 0 is written at distinct places along it. */
    int threads = par && stride[0][0] != 0 ? ag__threads_for(it->numel) : 1;
    if (threads > shape[0]) threads = (int)shape[0];
    if (threads <= 1) {
        if (packed) walk_packed(nd, shape, stride, nops, it->base, it->esize, packed, out_bytes, all_bytes, 0, shape[0], fn, ctx);
        else walk(nd, shape, stride, nops, it->base, 0, shape[0], fn, ctx);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t lo = ag__share_start(shape[0], t, nt), hi = ag__share_start(shape[0], t + 1, nt);
        if (lo < hi && packed) walk_packed(nd, shape, stride, nops, it->base, it->esize, packed, out_bytes, all_bytes, lo, hi, fn, ctx);
        else if (lo < hi) walk(nd, shape, stride, nops, it->base, lo, hi, fn, ctx);
    }
}

void ag__iter_run(ag_iter *it, ag_inner_fn fn, void *ctx) { run(it, fn, ctx, RUN_PLAIN); }

void ag__iter_run_any_order(ag_iter *it, ag_inner_fn fn, void *ctx) { run(it, fn, ctx, RUN_INPUT_ORDER); }

void ag__iter_run_sum(ag_iter *it, ag_inner_fn fn, void *ctx) {
    int threads = it->all_flat && it->nops == 2 && it->kind[0] == AG_ITER_CONST && it->kind[1] == AG_ITER_CONTIG
                      ? ag__threads_for(it->numel)
                      : 1;
    if (threads > 64) threads = 64;
    if (threads <= 1) {
        run(it, fn, ctx, RUN_PAR); /* splits only where operand 0 differs between the parts */
        return;
    }
    /* A full reduction: each thread sums its chunk into a zeroed float64 partial, then
     * the partials are added into operand 0 in order. */
    int64_t n = it->numel;
    double partial[64] = {0};
    char *in = it->base[1];
    int64_t ins = it->esize[1];
    int used = threads;
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        if (t == 0) used = nt;
        int64_t lo = ag__share_start(n, t, nt), hi = ag__share_start(n, t + 1, nt);
        char *q[2] = {(char *)&partial[t], in + lo * ins};
        int64_t st[2] = {0, ins};
        if (lo < hi) fn(q, st, hi - lo, ctx);
    }
    double total = 0;
    for (int t = 0; t < used; t++) total += partial[t];
    *(double *)it->base[0] += total;
}

void ag__iter_run_par(ag_iter *it, ag_inner_fn fn, void *ctx) { run(it, fn, ctx, RUN_PAR); }

bool ag__broadcastable(int from_ndim, const int64_t *from, int ndim, const int64_t *shape) {
    if (from_ndim > ndim) return false;
    for (int i = 0; i < from_ndim; i++) {
        int64_t f = from[from_ndim - 1 - i], s = shape[ndim - 1 - i];
        if (f != s && f != 1) return false;
    }
    return true;
}

int ag__broadcast_dims(int an, const int64_t *a, int bn, const int64_t *b, int *ndim, int64_t *shape) {
    int n = an > bn ? an : bn;
    for (int i = 0; i < n; i++) {
        int ia = an - n + i, ib = bn - n + i;
        int64_t sa = ia >= 0 ? a[ia] : 1, sb = ib >= 0 ? b[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) return i - n;
        shape[i] = sa == 1 ? sb : sa;
    }
    *ndim = n;
    return 0;
}

/* The size of dim d (negative: from the end) of t, 1 where t has fewer dims. */
static int64_t size_from_end(const ag_tensor *t, int d) { return t->ndim + d >= 0 ? t->shape[t->ndim + d] : 1; }

static bool shape_is(const ag_tensor *t, int ndim, const int64_t *shape) {
    if (t->ndim != ndim) return false;
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != shape[d]) return false;
    return true;
}

ag_status ag__broadcast_shape(const char *op, const ag_tensor *a, const ag_tensor *b,
                              int *ndim, int64_t *shape) {
    int bad = ag__broadcast_dims(a->ndim, a->shape, b->ndim, b->shape, ndim, shape);
    if (bad) {
        char x[AG_SHAPE_STR], y[AG_SHAPE_STR];
        return ag__fail(AG_ERR_SHAPE, "%s: shapes %s and %s cannot be broadcast (dim %d: %lld vs %lld)", op,
                        ag__tshape(x, a), ag__tshape(y, b), bad, (long long)size_from_end(a, bad),
                        (long long)size_from_end(b, bad));
    }
    /* Expanded operands may broadcast beyond 2^62 elements; a result of a's or b's own
     * shape (the common case) is valid as theirs is. */
    if (shape_is(a, *ndim, shape) || shape_is(b, *ndim, shape)) return AG_OK;
    return ag__check_shape(op, *ndim, shape);
}

ag_status ag__check_float(const char *op, const ag_tensor *t, const ag_tensor *other) {
    if (t->dtype != AG_F32 && t->dtype != AG_F64)
        return ag__fail(AG_ERR_DTYPE, "%s: expected a float32 or float64 tensor, got %s (convert with ag_to_dtype)",
                        op, ag_dtype_name(t->dtype));
    if (other && other->dtype != t->dtype)
        return ag__fail(AG_ERR_DTYPE, "%s: dtypes %s and %s differ (convert one with ag_to_dtype)", op,
                        ag_dtype_name(t->dtype), ag_dtype_name(other->dtype));
    return AG_OK;
}

/* ---- copies with conversion --------------------------------------------------------- */
/* CONV converts one source value: a cast, or ag__to_i64 from a float (a cast is
 * undefined for NaN, ±inf and values outside int64). */
#define CAST(TD, x) ((TD)(x))
/* 1 where TD and TS are one type: the copy is then a memmove of the run */
#define SAME_TYPE(TD, TS) _Generic((TD)0, TS: 1, default: 0)
#define TO_I64(TD, x) ag__to_i64(x)
#define COPY_KERNEL(NAME, TD, TS, CONV)                                                \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {               \
        (void)ctx;                                                                     \
        if (s[0] == sizeof(TD) && s[1] == sizeof(TS)) {                                \
            if (SAME_TYPE(TD, TS)) { /* glibc's vector copy, not this file's SSE2 loop;   \
                                       * memmove: a source overlaps only element for   \
                                       * element (ag_copy_), the same bits (session 18) */ \
                ag__move_bytes(p[0], p[1], (size_t)n * sizeof(TD));                    \
                return;                                                                \
            }                                                                          \
            TD *d = (TD *)p[0]; /* no restrict: dst and src may overlap (ag_copy_) */    \
            const TS *a = (const TS *)p[1];                                            \
            for (int64_t i = 0; i < n; i++) d[i] = CONV(TD, a[i]);                     \
            return;                                                                    \
        }                                                                              \
        if (s[0] == sizeof(TD) && s[1] == -(int64_t)sizeof(TS)) { /* reversed: a flip */ \
            TD *restrict d = (TD *)p[0]; /* a flip's source never overlaps its new dst */ \
            const TS *restrict a = (const TS *)p[1];                                   \
            for (int64_t i = 0; i < n; i++) d[i] = CONV(TD, a[-i]);                    \
            return;                                                                    \
        }                                                                              \
        if (s[0] == sizeof(TD) && s[1] == 0) { /* a broadcast source: d[i] = a[0] */     \
            TD *d = (TD *)p[0], v = CONV(TD, *(const TS *)p[1]);                       \
            for (int64_t i = 0; i < n; i++) d[i] = v;                                  \
            return;                                                                    \
        }                                                                              \
        for (int64_t i = 0; i < n; i++) *(TD *)(p[0] + i * s[0]) = CONV(TD, *(const TS *)(p[1] + i * s[1])); \
    }
#define COPY_ROW(TD, SUF, FLOAT_CONV)                                                  \
    COPY_KERNEL(copy_##SUF##_f32, TD, float, FLOAT_CONV)                               \
    COPY_KERNEL(copy_##SUF##_f64, TD, double, FLOAT_CONV)                              \
    COPY_KERNEL(copy_##SUF##_i64, TD, int64_t, CAST)                                   \
    COPY_KERNEL(copy_##SUF##_bool, TD, uint8_t, CAST)
COPY_ROW(float, f32, CAST)
COPY_ROW(double, f64, CAST)
COPY_ROW(int64_t, i64, TO_I64)
/* To uint8: floats truncate toward zero through int64 (ag__to_i64: values are
 * assumed in range, as in PyTorch; out-of-range integers wrap modulo 256). */
COPY_KERNEL(copy_u8_i64, uint8_t, int64_t, CAST)
COPY_KERNEL(copy_u8_u8, uint8_t, uint8_t, CAST)

static void copy_u8_float(char **p, const int64_t *s, int64_t n, void *ctx) {
    bool f64 = *(const ag_dtype *)ctx == AG_F64;
    for (int64_t i = 0; i < n; i++) {
        const char *q = p[1] + i * s[1];
        *(uint8_t *)(p[0] + i * s[0]) = (uint8_t)ag__to_i64(f64 ? *(const double *)q : *(const float *)q);
    }
}

static void copy_bool_any(char **p, const int64_t *s, int64_t n, void *ctx) {
    ag_dtype src = *(const ag_dtype *)ctx;
    for (int64_t i = 0; i < n; i++) {
        const char *q = p[1] + i * s[1];
        bool v = src == AG_F32 ? *(const float *)q != 0 : src == AG_F64 ? *(const double *)q != 0
               : src == AG_I64 ? *(const int64_t *)q != 0 : *(const uint8_t *)q != 0;
        *(uint8_t *)(p[0] + i * s[0]) = v;
    }
}

/* [dst][src]; bool and uint8 sources are both one unsigned byte.  Rows for bool
 * and float-to-uint8 destinations are handled in ag__copy_into. */
static const ag_inner_fn copy_table[3][5] = {
    {copy_f32_f32, copy_f32_f64, copy_f32_i64, copy_f32_bool, copy_f32_bool},
    {copy_f64_f32, copy_f64_f64, copy_f64_i64, copy_f64_bool, copy_f64_bool},
    {copy_i64_f32, copy_i64_f64, copy_i64_i64, copy_i64_bool, copy_i64_bool},
};

void ag__copy_into(ag_tensor *dst, const ag_tensor *src) {
    ag_iter it;
    ag__iter_init(&it, dst->ndim, dst->shape);
    ag__iter_add(&it, dst);
    ag__iter_add(&it, src);
    ag_dtype sd = src->dtype;
    if (dst->dtype == AG_BOOL) ag__iter_run_par(&it, copy_bool_any, &sd);
    else if (dst->dtype == AG_U8)
        ag__iter_run_par(&it, sd == AG_I64 ? copy_u8_i64 : sd == AG_F32 || sd == AG_F64 ? copy_u8_float : copy_u8_u8, &sd);
    else ag__iter_run_par(&it, copy_table[dst->dtype][src->dtype], NULL);
}

/* ---- short rows copied into a fresh tensor --------------------------------------------
 * A view whose last dim has unit stride and rows of at most SHORT_ROW_BYTES (sum's broadcast gradient, dy
 * [64, 1, 64] seen as [64, 64, 64] with stride 0 along dim 1; a slice's rows) went through the iterator
 * one row a call: its odometer, the kernel by pointer and a memmove per row, about 6 ns a 256-byte row,
 * half of sum's backward of [64, 64, 64] along dim 1.  Into a fresh destination (nothing overlaps) each
 * row is an inlined vector loop and the odometer over the leading dims is this one's; rows split over
 * threads as the iterator's copy does (ag__threads_for).  Bytes moved as they are: the same bits. */
#define SHORT_ROW_BYTES 1024
/* copy the `bytes` bytes at s to d (restrict: d is fresh), in units of T */
#define ROW_COPY(T, d, s, bytes)                                                               \
    do {                                                                                       \
        T *restrict d_ = (T *)(d);                                                             \
        const T *restrict s_ = (const T *)(s);                                                 \
        for (int64_t i_ = 0; i_ < (bytes) / (int64_t)sizeof(T); i_++) d_[i_] = s_[i_];          \
    } while (0)
/* Rows [r0, r1) of t (last dim of unit stride, C elements of es bytes a row) into the contiguous dst. */
AG_VEC_CLONES_512 static void copy_short_rows(char *restrict dst, const ag_tensor *t, int64_t r0, int64_t r1) {
    const int nd = t->ndim - 1;
    const int64_t es = (int64_t)ag__esize(t->dtype), row = t->shape[nd] * es;
    int64_t idx[AG_MAX_DIMS], rem = r0;
    const char *src = ag__ptr(t);
    for (int d = nd - 1; d >= 0; d--) { /* row r0's index over the leading dims */
        idx[d] = rem % t->shape[d];
        rem /= t->shape[d];
        src += idx[d] * t->stride[d] * es;
    }
    char *d = dst + r0 * row;
    for (int64_t r = r0; r < r1; r++, d += row) {
        if (es == 8) ROW_COPY(uint64_t, d, src, row);
        else if (es == 4) ROW_COPY(uint32_t, d, src, row);
        else ROW_COPY(uint8_t, d, src, row);
        for (int k = nd - 1; k >= 0; k--) { /* the next row's index */
            src += t->stride[k] * es;
            if (++idx[k] < t->shape[k]) break;
            src -= t->stride[k] * es * t->shape[k];
            idx[k] = 0;
        }
    }
}

/* Whether t takes copy_short_rows: at least two dims, the last of unit stride and at most
 * SHORT_ROW_BYTES, some element (the reference backend keeps the iterator's copy). */
static bool short_rows(const ag_tensor *t) {
    if (t->ndim < 2 || t->stride[t->ndim - 1] != 1 || ag__backend == AG_BACKEND_REFERENCE) return false;
    const int64_t C = t->shape[t->ndim - 1];
    return C > 0 && C * (int64_t)ag__esize(t->dtype) <= SHORT_ROW_BYTES && ag__numel(t->ndim, t->shape) > 0;
}

ag_tensor *ag__contig_or_copy(ag_tensor *t) {
    if (ag__contig(t)) return ag_retain(t);
    ag_tensor *c = ag__new_unowned(t->dtype, t->ndim, t->shape, false);
    if (!c) return NULL;
    if (!short_rows(t)) {
        ag__copy_into(c, t);
        return c;
    }
    const int64_t n = ag__numel(t->ndim, t->shape), rows = n / t->shape[t->ndim - 1];
    const int nt = ag__threads_for(n);
    if (nt <= 1) copy_short_rows(ag__ptr(c), t, 0, rows);
    else {
#pragma omp parallel num_threads(nt)
        {
            const int n_ = omp_get_num_threads(), t_ = omp_get_thread_num();
            copy_short_rows(ag__ptr(c), t, ag__share_start(rows, t_, n_), ag__share_start(rows, t_ + 1, n_));
        }
    }
    return c;
}

ag_lanes ag__lanes_of(const ag_tensor *x, int d) {
    ag_lanes L = {1, 1, 1};
    for (int k = 0; k < x->ndim; k++) {
        if (k < d) L.outer *= x->shape[k];
        else if (k == d) L.n = x->shape[k];
        else L.inner *= x->shape[k];
    }
    /* No lane at all when a dim other than d is empty: then neither count is walked,
     * however large the other (a [2^48, 0] tensor has no lane along dim 0 to reduce). */
    if (L.outer == 0 || L.inner == 0) L.outer = L.inner = 0;
    return L;
}

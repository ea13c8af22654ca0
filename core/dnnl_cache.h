/*
 * core/dnnl_cache.h - oneDNN primitives created once and reused.
 *
 * Creating a oneDNN primitive costs 2 to 300 µs, executing a cached one about
 * 0.15 µs plus ~10 ns per rebound pointer.  Each thread keeps a map from a key
 * (primitive kind, algorithm, dims, dtype, thread count, parameters) to a
 * primitive with its memory objects; a call rebinds the data pointers with
 * dnnl_memory_set_data_handle and executes.  One engine and one stream serve
 * every thread (created once; oneDNN's CPU stream executes in the caller).
 * Primitives run on the thread that created them (their scratchpad is shared).
 */
#ifndef AGRAD_DNNL_CACHE_H
#define AGRAD_DNNL_CACHE_H

#include <dnnl.h>
#include "core/internal.h"

#define AG_DNNL_MAX_ARGS 20 /* the RNN backward (core/dnnl_rnn.c) binds 19 */
#define AG_DNNL_KEY_DIMS 12

/* What identifies a primitive.  Zero-initialise, then fill what applies. */
typedef struct ag_dnnl_key {
    int kind;       /* AG_DNNL_* below */
    int alg;        /* dnnl_alg_kind_t, or a kind-specific variant */
    int dtype;      /* dnnl_data_type_t */
    int threads;    /* OpenMP threads it runs with */
    float alpha, beta;
    int64_t dims[AG_DNNL_KEY_DIMS]; /* kind-specific geometry */
} ag_dnnl_key;

enum {
    AG_DNNL_ELTWISE_FWD = 1, AG_DNNL_ELTWISE_BWD, AG_DNNL_MATMUL, AG_DNNL_SOFTMAX_FWD, AG_DNNL_SOFTMAX_BWD,
    AG_DNNL_CONV_FWD, AG_DNNL_CONV_BWD_DATA, AG_DNNL_CONV_BWD_WEIGHTS, /* core/dnnl_conv.c */
    AG_DNNL_MATMUL_BATCHED
};

/* A cached primitive and the memory objects of its arguments, in the order the
 * data pointers are passed to ag__dnnl_exec.  An argument whose layout the primitive
 * chose (dnnl_format_tag_any: a blocked layout, or another element type) has a
 * reorder[i] between the caller's plain buffer (bound to user[i]) and a scratch
 * buffer of bytes[i] bytes bound to args[i]: run before the primitive for an input,
 * after it for an output (is_output[i]).  reorder[i] NULL: the caller's buffer is
 * bound to args[i] itself.  Bit i of to_nchw16c: that reorder takes a plain float32 NCHW input
 * to bf16 nChw16c, which agrad's kernel does (ag__f32_to_bf16_nchw16c: the same bits, 3.4x
 * faster in cache than oneDNN 2.6's jit:uni reorder) instead of reorder[i]. */
typedef struct ag_dnnl_prim {
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[AG_DNNL_MAX_ARGS];
    dnnl_primitive_t reorder[AG_DNNL_MAX_ARGS];
    dnnl_memory_t user[AG_DNNL_MAX_ARGS];
    size_t bytes[AG_DNNL_MAX_ARGS];
    bool is_output[AG_DNNL_MAX_ARGS];
    uint32_t to_nchw16c; /* bit i: argument i's */
} ag_dnnl_prim;

/* Binds argument i of p (made with the primitive's own memory descriptor md) to the
 * caller's plain layout user_md: when they differ, creates the reorder between them
 * (direction is_output) and the user memory object.  Returns dnnl_success or the failure. */
AG_HIDDEN dnnl_status_t ag__dnnl_bind_arg(ag_dnnl_prim *p, int i, int arg, const dnnl_memory_desc_t *md,
                                          const dnnl_memory_desc_t *user_md, bool is_output, dnnl_engine_t eng);

/* Builds the primitive for key into *out (prim and args; memory objects created
 * with DNNL_MEMORY_NONE).  Returns dnnl_success or the failure. */
typedef dnnl_status_t (*ag_dnnl_make_fn)(const ag_dnnl_key *key, dnnl_engine_t engine, ag_dnnl_prim *out);

/* The cached primitive for key, created with make on a miss; NULL if oneDNN
 * cannot provide it (the caller then uses its own loop; no error is recorded;
 * the failure is cached too).  make starts from a zeroed ag_dnnl_prim. */
AG_HIDDEN ag_dnnl_prim *ag__dnnl_get(const ag_dnnl_key *key, ag_dnnl_make_fn make);

/* A scratch buffer of at least bytes bytes for a primitive's argument, 64-byte aligned as
 * oneDNN allocates its own (its Winograd kernels write theirs with aligned streaming
 * stores, which fault on malloc's 16-byte alignment); free() frees it.  NULL when out of
 * memory.  Not ag__alloc: a failure records nothing (the caller falls back to its loops). */
AG_HIDDEN void *ag__dnnl_scratch(size_t bytes);

/* Binds data[i] to argument i of p and executes it with key->threads threads
 * (reordering the arguments that have a reorder into scratch buffers and back).
 * Returns false if oneDNN failed: the caller computes the result with its own
 * loop instead (nothing is recorded), so a backend failure never fails an op. */
AG_HIDDEN bool ag__dnnl_exec(ag_dnnl_prim *p, const ag_dnnl_key *key, void *const *data);

/* ag__dnnl_exec where each input i with ready[i] (ready NULL: none) is already in the
 * primitive's layout (data[i] a buffer ag__dnnl_reorder_in filled): its reorder is
 * skipped, so that two primitives reading the same input reorder it once; an output i
 * with ready[i] is left in the primitive's layout in data[i] (p->bytes[i] bytes), for
 * ag__dnnl_reorder_out. */
AG_HIDDEN bool ag__dnnl_exec_ready(ag_dnnl_prim *p, const ag_dnnl_key *key, void *const *data, const bool *ready);
/* Reorders the caller's plain input data into buf (p->bytes[i] bytes: argument i's
 * layout, p->reorder[i] not NULL) on key->threads threads.  false if oneDNN failed. */
AG_HIDDEN bool ag__dnnl_reorder_in(ag_dnnl_prim *p, const ag_dnnl_key *key, int i, const void *data, void *buf);

/* Reorders output i of p from buf (in the primitive's layout, p->reorder[i] not NULL) into
 * the caller's plain data on key->threads threads.  false if oneDNN failed. */
AG_HIDDEN bool ag__dnnl_reorder_out(ag_dnnl_prim *p, const ag_dnnl_key *key, int i, const void *buf, void *data);

/* Threads an eltwise primitive over n floats runs with (1 below its split size). */
AG_HIDDEN int ag__dnnl_eltwise_threads(int64_t n);

/* y = f(x) over n contiguous floats with eltwise algorithm alg (alpha = beta = 0).
 * Returns false (nothing recorded) when no primitive is available or it failed:
 * the caller then runs its own loop. */
AG_HIDDEN bool ag__dnnl_eltwise_fwd(int alg, const float *x, float *y, int64_t n);
/* dx = f'(·)·dy over n floats, where src is x, or y for *_use_dst_for_bwd algorithms. */
AG_HIDDEN bool ag__dnnl_eltwise_bwd(int alg, const float *src, const float *dy, float *dx, int64_t n);

/* C[m, n] = A[m, k]·B[k, n] (+ bias[n] on every row when bias is not NULL), float32,
 * with element strides (rs between rows, cs between columns; C's columns are
 * contiguous), on `threads` threads.  false: no primitive, the caller computes it. */
AG_HIDDEN bool ag__dnnl_matmul(int64_t m, int64_t k, int64_t n, const float *a, int64_t a_rs, int64_t a_cs,
                               const float *b, int64_t b_rs, int64_t b_cs, float *c, int64_t ldc, const float *bias,
                               int threads);
/* The same product from bfloat16 A and B (float32 accumulation, C and bias float32),
 * for autocast (core/autocast.h).  false: no primitive (no bf16 ISA), the caller
 * computes it in float32. */
AG_HIDDEN bool ag__dnnl_matmul_bf16(int64_t m, int64_t k, int64_t n, const uint16_t *a, int64_t a_rs, int64_t a_cs,
                                    const uint16_t *b, int64_t b_rs, int64_t b_cs, float *c, int64_t ldc,
                                    const float *bias, int threads);

/* C[b0, b1, m, n] = scale·Σ_k A[b0, b1, m, k]·B[b0, b1, k, n] for b0 < batch[0], b1 < batch[1],
 * float32, in one primitive call on `threads` threads: A and B read in place through their
 * element strides sa, sb (batch 0, batch 1, row, column: a strided view such as the heads of a
 * packed projection), C contiguous.  Every size below 2^31 (ag__dnnl_matmul_batched_fits).
 * false: no primitive or it failed (nothing recorded), the caller computes C. */
AG_HIDDEN bool ag__dnnl_matmul_batched(const int64_t batch[2], int64_t m, int64_t k, int64_t n, const float *a,
                                       const int64_t sa[4], const float *b, const int64_t sb[4], float *c, float scale,
                                       int threads);
/* Whether ag__dnnl_matmul_batched takes these sizes (its key packs two into one of its dims). */
AG_HIDDEN bool ag__dnnl_matmul_batched_fits(const int64_t batch[2], int64_t m, int64_t k, int64_t n);

/* Softmax along the middle dim of contiguous float32 [outer, n, inner] data (softmax_v2, alg
 * dnnl_softmax_accurate or dnnl_softmax_log): forward y = f(x); backward dx from y and dy.
 * Threads: all from SOFTMAX_PAR_MIN elements (dnnl_cache.c), else one.  false: no
 * primitive or it failed (nothing recorded), the caller computes the result. */
AG_HIDDEN bool ag__dnnl_softmax_fwd(int alg, int64_t outer, int64_t n, int64_t inner, const float *x, float *y);
AG_HIDDEN bool ag__dnnl_softmax_bwd(int alg, int64_t outer, int64_t n, int64_t inner, const float *y, const float *dy,
                                    float *dx);

/* For benchmarks: ag__dnnl_get calls made by this thread so far. */
AG_HIDDEN long ag__dnnl_lookups(void);
/* For benchmarks: the primitive this thread's last ag__dnnl_get returned, with its
 * key in *key; NULL if that lookup gave none.  Valid until this thread's next lookup. */
AG_HIDDEN ag_dnnl_prim *ag__dnnl_last(ag_dnnl_key *key);

/* Primitives created so far by this process (for tests: reuse does not create). */
AG_HIDDEN long ag__dnnl_primitives_created(void);
/* Destroys this thread's cached primitives (also done at thread and process exit). */
AG_HIDDEN void ag__dnnl_cache_clear(void);

/* ---- convolution (core/dnnl_conv.c) ------------------------------------------------------
 * Forward, backward data and backward weights (with the bias gradient) for float32 in
 * PyTorch's geometry (dilation 1 = dense, padding before and after each spatial dim), on
 * the caller's contiguous buffers in plain layouts (x, y: NCHW; w: OIHW, seen as GOIHW
 * when groups > 1).  A direct convolution of a batch whose activations exceed the cache runs
 * in chunks of images (dnnl_conv.c: chunk_images), on several threads a share of the batch
 * per thread (split_threads), its dw and db the sums of the chunks'. */
/* A 2-d convolution's sizes: x [N, C, H, W], w [O, C/groups, KH, KW], y [N, O, OH, OW];
 * stride s, dilation d (≥ 1), padding top/bottom (pt, pb) and left/right (pl, pr). */
typedef struct ag_conv_geom {
    int64_t N, C, H, W, O, KH, KW, OH, OW;
    int64_t sh, sw, dh, dw, pt, pb, pl, pr, groups;
} ag_conv_geom;

/* True when every size of g fits the cache key (each below 2^31) and g has no empty
 * dim: the primitives below may then be asked for it. */
AG_HIDDEN bool ag__dnnl_conv_fits(const ag_conv_geom *g);

/* y = conv(x, w) + b (b NULL: no bias).  false: no primitive or it failed (nothing
 * recorded); the caller computes y with its own loop. */
AG_HIDDEN bool ag__dnnl_conv_fwd(const ag_conv_geom *g, const float *x, const float *w, const float *b, float *y);
/* dx = convᵀ(dy, w) (overwritten).  false as above. */
AG_HIDDEN bool ag__dnnl_conv_bwd_data(const ag_conv_geom *g, const float *w, const float *dy, float *dx);
/* dw = Σ dy ⊗ x windows, db = Σ_{n,i,j} dy (db NULL: no bias), both overwritten.  false as above. */
AG_HIDDEN bool ag__dnnl_conv_bwd_weights(const ag_conv_geom *g, const float *x, const float *dy, float *dw, float *db);
/* dx as ag__dnnl_conv_bwd_data and dw, db as ag__dnnl_conv_bwd_weights, dy reordered into the
 * primitives' layout once for both when they share it.  false (nothing recorded, nothing or
 * part written): the caller computes all three with the calls above or its own loops. */
AG_HIDDEN bool ag__dnnl_conv_bwd(const ag_conv_geom *g, const float *x, const float *w, const float *dy, float *dx,
                                 float *dw, float *db);

#endif

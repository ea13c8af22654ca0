/*
 * core/dnnl_conv.c - oneDNN convolution primitives for ops/conv.c (dnnl_cache.h),
 * cached in the per-thread map of dnnl_cache.c.
 *
 * The key packs two sizes below 2^31 into each of its dims (ag__dnnl_conv_fits
 * guarantees it), so that no two geometries share one.  Each backward primitive
 * is made with the forward primitive descriptor as its hint, as oneDNN requires.
 * Each primitive works in the layouts oneDNN prefers for its shape (format_tag_any:
 * nChw16c activations and blocked weights on AVX-512), which run its direct JIT
 * kernels instead of the im2col + GEMM it uses on plain NCHW: the conv2d_cnn step
 * (x [64, 32, 14, 14], w [64, 32, 3, 3]) took 20.5 ms of CPU time for the three
 * primitives in plain layouts, 11.9 ms blocked plus 2.2 ms of reorders.  The caller's
 * tensors stay plain; each call reorders its arguments into scratch buffers and its
 * results back (dnnl_cache.h: ag__dnnl_bind_arg).  Those direct kernels run near the
 * FMA peak, so where it pays (winograd_pays) float32 runs oneDNN's Winograd algorithm
 * instead, fewer products for the same convolution (conv2d_cnn's three primitives: 11.7
 * -> 7.4 ms on one thread; docs/conv.md has its rounding).  A direct convolution whose
 * activations exceed the cache runs chunk by chunk of images (chunk_images), so that the
 * reorders read and write cached data; on several threads each thread takes a share of the
 * batch and runs its chunks alone (split_threads).  Under bf16 autocast
 * (core/autocast.h) the bf16 primitive's reorders also round the inputs to bf16
 * (float32 outputs), or float32 runs when oneDNN has no bf16 primitive.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "core/autocast.h"
#include "core/dnnl_cache.h"
#include "core/parallel.h"

/* Multiply-adds from which a convolution runs on all threads (below: one, sparing
 * the OpenMP fork for a tiny layer). */
#define CONV_PAR_MACS ((int64_t)1 << 20)

/* From how many multiply-adds, and input and output channels, a float32 3×3 convolution
 * runs oneDNN's Winograd kernels (winograd_pays). */
#define WINO_MIN_MACS ((int64_t)1 << 24)
#define WINO_MIN_CHANNELS 16

/* Bytes of float32 activations (input and output) a chunk of a split batch holds at most
 * (chunk_images): a quarter of the core's L2 (2 MiB on Sapphire Rapids), with room for the
 * blocked copies.  cnn_fashion's first convolution by chunk size (one thread): 256 KiB to
 * 1 MiB alike, 4 MiB 20-60% slower. */
#define CHUNK_BYTES ((int64_t)1 << 19)

bool ag__dnnl_conv_fits(const ag_conv_geom *g) {
    const int64_t v[] = {g->N,  g->C,  g->H,  g->W,  g->O,  g->KH, g->KW, g->OH, g->OW,
                         g->sh, g->sw, g->dh, g->dw, g->pt, g->pb, g->pl, g->pr, g->groups};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] < 0 || v[i] >= ((int64_t)1 << 31)) return false;
    return g->N && g->C && g->H && g->W && g->O && g->KH && g->KW && g->OH && g->OW && g->groups;
}

static int64_t pack(int64_t hi, int64_t lo) { return hi << 32 | lo; }

/* Whether oneDNN's Winograd F(4×4, 3×3) kernels (jit_wino_4x3: 36 products per 16
 * outputs where the direct kernel makes 144) beat its direct ones on g, by a sweep of
 * shapes on one AVX-512 core (docs/benchmarks.md, "Where a CNN step's time goes"): 3×3,
 * stride 1, dense, one group, at least 16 input and output channels (one vector of the
 * blocked layout; with 1, 3 or 8 input channels its forward was 1.25-8.7x slower) and 2^24
 * multiply-adds (below, the transforms' cost ate the gain).  Where oneDNN has no Winograd
 * kernel for g (a geometry it does not take, no AVX-512) the direct one runs (lookup). */
static bool winograd_pays(const ag_conv_geom *g, int64_t macs) {
    return g->KH == 3 && g->KW == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 && g->groups == 1 &&
           g->C >= WINO_MIN_CHANNELS && g->O >= WINO_MIN_CHANNELS && macs >= WINO_MIN_MACS;
}

/* g's multiply-adds, saturated (they pick the thread count and the algorithm) */
static int64_t macs_of(const ag_conv_geom *g) {
    int64_t macs;
    if (ag__mul_overflow(g->N * g->O, g->OH * g->OW, &macs) || ag__mul_overflow(macs, g->C / g->groups, &macs) ||
        ag__mul_overflow(macs, g->KH * g->KW, &macs))
        return INT64_MAX;
    return macs;
}

/* The key's dims: N, C, H|W, O, KH|KW, OH|OW, sh|sw, dh|dw, pt|pb, pl|pr, groups, has bias;
 * its alg the convolution algorithm (Winograd where it pays, else direct). */
static void conv_key(ag_dnnl_key *k, int kind, const ag_conv_geom *g, bool bias) {
    memset(k, 0, sizeof *k);
    k->kind = kind;
    k->dtype = dnnl_f32;
    const int64_t macs = macs_of(g);
    k->threads = omp_in_parallel() ? 1
                 : macs < CONV_PAR_MACS && ag__backend == AG_BACKEND_AUTO ? 1
                                                                          : omp_get_max_threads();
    k->alg = winograd_pays(g, macs) ? dnnl_convolution_winograd : dnnl_convolution_direct;
    const int64_t d[12] = {g->N,
                           g->C,
                           pack(g->H, g->W),
                           g->O,
                           pack(g->KH, g->KW),
                           pack(g->OH, g->OW),
                           pack(g->sh, g->sw),
                           pack(g->dh, g->dw),
                           pack(g->pt, g->pb),
                           pack(g->pl, g->pr),
                           g->groups,
                           bias};
    memcpy(k->dims, d, sizeof d);
}

static int64_t hi(int64_t v) { return v >> 32; }
static int64_t lo(int64_t v) { return v & 0xffffffff; }

/* Memory descriptors of src, weights, bias and dst for key k, of element types ts, tw and
 * td (the bias is float32 in its plain layout): the plain layouts (NCHW, OIHW or GOIHW),
 * or with any set dnnl_format_tag_any, the primitive's choice. */
static dnnl_status_t conv_mds(const ag_dnnl_key *k, bool any, dnnl_data_type_t ts, dnnl_data_type_t tw,
                              dnnl_data_type_t td, dnnl_memory_desc_t *src, dnnl_memory_desc_t *wei,
                              dnnl_memory_desc_t *bias, dnnl_memory_desc_t *dst) {
    const int64_t *d = k->dims, G = d[10];
    dnnl_dims_t ds = {d[0], d[1], hi(d[2]), lo(d[2])}, dd = {d[0], d[3], hi(d[5]), lo(d[5])}, db = {d[3]};
    dnnl_dims_t dw = {d[3], d[1] / G, hi(d[4]), lo(d[4])}, dgw = {G, d[3] / G, d[1] / G, hi(d[4]), lo(d[4])};
    const dnnl_format_tag_t act = any ? dnnl_format_tag_any : dnnl_nchw,
                            w4 = any ? dnnl_format_tag_any : dnnl_oihw, w5 = any ? dnnl_format_tag_any : dnnl_goihw;
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_tag(src, 4, ds, ts, act)) ||
        (st = dnnl_memory_desc_init_by_tag(dst, 4, dd, td, act)) ||
        (st = dnnl_memory_desc_init_by_tag(bias, 1, db, dnnl_f32, dnnl_a)))
        return st;
    return G > 1 ? dnnl_memory_desc_init_by_tag(wei, 5, dgw, tw, w5) : dnnl_memory_desc_init_by_tag(wei, 4, dw, tw, w4);
}

/* The primitive descriptor of key k's direction, its layouts oneDNN's choice (any) or plain.
 * float32 throughout, or under bf16 autocast bf16 inputs (src, weights, diff_dst) and float32
 * outputs (dst, diff_src, diff_weights); the forward made for a hint has the forward's types. */
static dnnl_status_t conv_pd(const ag_dnnl_key *k, bool any, dnnl_engine_t eng, dnnl_primitive_desc_t *pd) {
    const int64_t *d = k->dims;
    const bool has_bias = d[11] != 0;
    const dnnl_data_type_t in = (dnnl_data_type_t)k->dtype, f32 = dnnl_f32;
    dnnl_memory_desc_t src, wei, bias, dst, bsrc, bwei, bdst; /* the forward's and the backward's */
    dnnl_status_t st = conv_mds(k, any, in, in, f32, &src, &wei, &bias, &dst);
    if (!st && k->kind == AG_DNNL_CONV_BWD_DATA) st = conv_mds(k, any, f32, in, in, &bsrc, &bwei, &bias, &bdst);
    if (!st && k->kind == AG_DNNL_CONV_BWD_WEIGHTS) st = conv_mds(k, any, in, f32, in, &bsrc, &bwei, &bias, &bdst);
    if (st) return st;
    /* oneDNN counts dilation from 0 (dense), PyTorch from 1. */
    dnnl_dims_t strides = {hi(d[6]), lo(d[6])}, dil = {hi(d[7]) - 1, lo(d[7]) - 1};
    dnnl_dims_t pad_l = {hi(d[8]), hi(d[9])}, pad_r = {lo(d[8]), lo(d[9])};
    const dnnl_alg_kind_t alg = (dnnl_alg_kind_t)k->alg;
    dnnl_convolution_desc_t fd, bd;
    if ((st = dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &src, &wei,
                                                          has_bias ? &bias : NULL, &dst, strides, dil, pad_l, pad_r)))
        return st;
    dnnl_primitive_desc_t fpd;
    if ((st = dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL))) return st;
    if (k->kind == AG_DNNL_CONV_FWD) {
        *pd = fpd;
        return dnnl_success;
    }
    if (k->kind == AG_DNNL_CONV_BWD_DATA)
        st = dnnl_dilated_convolution_backward_data_desc_init(&bd, alg, &bsrc, &bwei, &bdst,
                                                              strides, dil, pad_l, pad_r);
    else
        st = dnnl_dilated_convolution_backward_weights_desc_init(&bd, alg, &bsrc, &bwei,
                                                                 has_bias ? &bias : NULL, &bdst, strides, dil, pad_l,
                                                                 pad_r);
    if (!st) st = dnnl_primitive_desc_create(pd, &bd, NULL, eng, fpd);
    dnnl_primitive_desc_destroy(fpd);
    return st;
}

/* The primitive of key k in the layouts oneDNN prefers (blocked: nChw16c activations,
 * OIhw16i16o-like weights, as it picks for the shape and ISA), falling back to plain
 * layouts where it offers none.  Each argument is bound to the caller's plain float32
 * buffer through a reorder when the primitive's layout or type differs (dnnl_cache.h);
 * the bf16 inputs of autocast are converted by those reorders. */
static dnnl_status_t make_conv(const ag_dnnl_key *k, dnnl_engine_t eng, ag_dnnl_prim *out) {
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = conv_pd(k, true, eng, &pd);
    const char *impl = NULL;
    if (!st && !dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) && impl && !strncmp(impl, "ref", 3)) {
        dnnl_primitive_desc_destroy(pd); /* no JIT kernel for a blocked layout: the plain one's GEMM is faster */
        st = dnnl_unimplemented;
    }
    if (st) st = conv_pd(k, false, eng, &pd);
    if (st) return st;
    dnnl_memory_desc_t src, wei, bias, dst; /* the caller's */
    if ((st = conv_mds(k, false, dnnl_f32, dnnl_f32, dnnl_f32, &src, &wei, &bias, &dst)) ||
        (st = dnnl_primitive_create(&out->prim, pd))) {
        dnnl_primitive_desc_destroy(pd);
        return st;
    }
    /* the arguments in the order of the data pointers (ag__dnnl_conv_* below) */
    const bool has_bias = k->dims[11] != 0;
    const int fwd[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS},
              bwd_data[3] = {DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC},
              bwd_weights[4] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_BIAS};
    const int *ids = k->kind == AG_DNNL_CONV_FWD ? fwd : k->kind == AG_DNNL_CONV_BWD_DATA ? bwd_data : bwd_weights;
    out->nargs = k->kind == AG_DNNL_CONV_BWD_DATA ? 3 : has_bias ? 4 : 3;
    for (int i = 0; i < out->nargs && !st; i++) {
        const int a = ids[i];
        const dnnl_memory_desc_t *user = a == DNNL_ARG_SRC || a == DNNL_ARG_DIFF_SRC ? &src
                                         : a == DNNL_ARG_WEIGHTS || a == DNNL_ARG_DIFF_WEIGHTS ? &wei
                                         : a == DNNL_ARG_DST || a == DNNL_ARG_DIFF_DST ? &dst
                                                                                       : &bias;
        const bool output = a == DNNL_ARG_DST || a == DNNL_ARG_DIFF_SRC || a == DNNL_ARG_DIFF_WEIGHTS ||
                            a == DNNL_ARG_DIFF_BIAS;
        st = ag__dnnl_bind_arg(out, i, a, dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, a), user, output,
                               eng);
    }
    dnnl_primitive_desc_destroy(pd);
    return st;
}

/* The cached primitive of kind for n images of g (bf16 where oneDNN has one and bf16 is set:
 * the caller's autocast state, which is per thread, so read once before any parallel region;
 * else float32; float32 by Winograd where it pays and oneDNN has it, else direct), its key in
 * *key; NULL if none.  The algorithm is g's whole batch's, so that every chunk of a split batch
 * (chunk_images) runs the same kernel; the thread count too, or one inside a parallel region
 * (a thread's share of a split batch, split_threads).  oneDNN has no bf16 Winograd kernel: bf16
 * runs direct. */
static ag_dnnl_prim *lookup(int kind, const ag_conv_geom *g, bool bias, bool bf16, int64_t n, ag_dnnl_key *key) {
    if (!ag__dnnl_conv_fits(g)) return NULL;
    conv_key(key, kind, g, bias);
    key->dims[0] = n;
    const int alg = key->alg;
    ag_dnnl_prim *p = NULL;
    if (bf16) { /* float32 where oneDNN has no bf16 primitive */
        key->dtype = dnnl_bf16;
        key->alg = dnnl_convolution_direct;
        p = ag__dnnl_get(key, make_conv);
    }
    if (!p) {
        key->dtype = dnnl_f32;
        key->alg = alg;
        p = ag__dnnl_get(key, make_conv);
    }
    if (!p && alg != dnnl_convolution_direct) {
        key->alg = dnnl_convolution_direct;
        p = ag__dnnl_get(key, make_conv);
    }
    return p;
}

/* At most how many images a chunk of g's batch holds (g->N: the batch is not split).  Each call
 * reorders its chunk of the activations into the primitive's layout and back; at most CHUNK_BYTES
 * of them a chunk, the reordered input is still in the core's cache when the primitive reads it,
 * and the primitive's output when its reorder reads it, instead of a pass through memory each way
 * (cnn_fashion's first convolution: 12.8 MB outputs; by part, one thread, forward 4.3-5.1 ->
 * 2.3-3.0 ms, backward weights 4.1-6.8 -> 1.9-3.4 ms).  Not split: a batch within two chunks, an
 * image over half a chunk, and float32 Winograd shapes (cnn_fashion's second convolution: its
 * backward 11 -> 13-16 ms in chunks). */
static int64_t chunk_images(const ag_conv_geom *g, bool bf16) {
    int64_t per, out; /* bytes of one image's input and output in float32 */
    if (ag__mul_overflow(g->C * g->H, g->W, &per) || ag__mul_overflow(g->O * g->OH, g->OW, &out) ||
        ag__add_overflow(per, out, &per) || ag__mul_overflow(per, 4, &per))
        return g->N;
    if (per > CHUNK_BYTES / 2 || g->N <= 2 * CHUNK_BYTES / per) return g->N;
    if (!bf16 && winograd_pays(g, macs_of(g))) return g->N;
    return CHUNK_BYTES / per;
}

/* Threads over which a batch split in chunks of at most nmax images runs (1: the batch is
 * not split, or the convolution runs on one thread): the threads the whole batch's primitive
 * would use, at most one per chunk.  Each thread runs its share of the images chunk by chunk
 * on one thread, in its own core's cache, instead of every thread taking part in every
 * chunk's reorders and primitives (conv2d_cnn_bf16 on two threads: 11 chunks of 6 images,
 * 132 oneDNN calls a step each ending at a barrier, 4.3 -> 5.0 ms against the whole batch). */
static int split_threads(const ag_conv_geom *g, int64_t nmax) {
    if (nmax >= g->N) return 1;
    ag_dnnl_key k;
    conv_key(&k, AG_DNNL_CONV_FWD, g, false);
    const int64_t chunks = ag__ceil_div(g->N, nmax);
    return k.threads < chunks ? k.threads : (int)chunks;
}

/* The images [*i0, *i1) of thread t of nt in g's batch, and the images of each chunk of them
 * but the last (at most nmax, equal chunks but the last). */
static int64_t share(const ag_conv_geom *g, int t, int nt, int64_t nmax, int64_t *i0, int64_t *i1) {
    *i0 = ag__share_start(g->N, t, nt);
    *i1 = ag__share_start(g->N, t + 1, nt);
    return *i1 > *i0 ? ag__ceil_div(*i1 - *i0, ag__ceil_div(*i1 - *i0, nmax)) : 1;
}

/* Argument i of p (an input) reordered once into *buf, p's layout, for every chunk of n0 images
 * (ready[i] set); nothing when it needs no reorder.  false: no memory or oneDNN failed. */
static bool reorder_once(ag_dnnl_prim *p, const ag_dnnl_key *k, int i, const void *data, void **buf, bool *ready) {
    if (!p->reorder[i] || ready[i]) return true;
    if (!(*buf = ag__dnnl_scratch(p->bytes[i]))) return false;
    return ready[i] = ag__dnnl_reorder_in(p, k, i, data, *buf);
}

/* dst += src over n floats (a chunk's weight or bias gradient into the batch's) */
static void add_into(float *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

/* y = conv(x, w) + b over images [i0, i1) in chunks of n0 (the last may be shorter), the
 * weights reordered once for the chunks of n0 images. */
static bool fwd_span(const ag_conv_geom *g, bool bf16, int64_t i0, int64_t i1, int64_t n0, const float *x,
                     const float *w, const float *b, float *y) {
    const int64_t xs = g->C * g->H * g->W, ys = g->O * g->OH * g->OW;
    void *wbuf = NULL;
    bool ok = true, ready[4] = {false, false, false, false};
    for (int64_t i = i0; ok && i < i1; i += n0) {
        const int64_t n = i1 - i < n0 ? i1 - i : n0;
        ag_dnnl_key k;
        ag_dnnl_prim *p = lookup(AG_DNNL_CONV_FWD, g, b != NULL, bf16, n, &k);
        const bool reuse = n == n0 && n0 < i1 - i0;
        ok = p && (!reuse || reorder_once(p, &k, 1, w, &wbuf, ready));
        void *data[4] = {(void *)(x + i * xs), reuse && ready[1] ? wbuf : (void *)w, y + i * ys, (void *)b};
        ok = ok && ag__dnnl_exec_ready(p, &k, data, reuse ? ready : NULL);
    }
    free(wbuf);
    return ok;
}

bool ag__dnnl_conv_fwd(const ag_conv_geom *g, const float *x, const float *w, const float *b, float *y) {
    const bool bf16 = ag__autocast == AG_AUTOCAST_BF16;
    const int64_t nmax = chunk_images(g, bf16);
    const int nt = split_threads(g, nmax);
    int64_t i0, i1;
    if (nt == 1) return fwd_span(g, bf16, 0, g->N, share(g, 0, 1, nmax, &i0, &i1), x, w, b, y);
    bool ok = true;
#pragma omp parallel num_threads(nt) private(i0, i1) reduction(&& : ok)
    {
        omp_set_num_threads(1); /* this thread's primitives made for one thread, as they run */
        const int64_t n0 = share(g, omp_get_thread_num(), omp_get_num_threads(), nmax, &i0, &i1);
        ok = fwd_span(g, bf16, i0, i1, n0, x, w, b, y);
    }
    return ok;
}

/* dx = convᵀ(dy, w) when dx is not NULL, dw and db (db NULL: none) from x and dy when dw is not
 * NULL, over images [i0, i1) chunk by chunk of n0 (the last may be shorter), each chunk's dy
 * reordered once for both primitives when they read it in one layout (cnn_fashion's second
 * convolution: one pass over dy of 0.85 ms spared), the weights once for the chunks of n0.
 * Each chunk after the first adds its weight and bias gradients into dw and db: the chunks of n0
 * images in the primitive's blocked layout, reordered into dw once after the last of them (one
 * reorder of dw where each chunk took one: 5.4 µs each for conv2d_cnn's [64, 32, 3, 3]), then a
 * shorter last chunk in dw's; each element's additions in the same order either way. */
static bool bwd_span(const ag_conv_geom *g, bool bf16, int64_t i0, int64_t i1, int64_t n0, const float *x,
                     const float *w, const float *dy, float *dx, float *dw, float *db) {
    const int64_t xs = g->C * g->H * g->W, ys = g->O * g->OH * g->OW,
                  nw = g->O * (g->C / g->groups) * g->KH * g->KW;
    void *wbuf = NULL, *dybuf = NULL;
    float *part = NULL, *acc = NULL, *bpart = NULL; /* a later chunk's dw then db; the blocked sum and term */
    bool ok = true, ready[4] = {false, false, false, false};
    if (dw && n0 < i1 - i0 && !(part = malloc(sizeof(float) * (size_t)(nw + g->O)))) return false;
    for (int64_t i = i0; ok && i < i1; i += n0) {
        const int64_t n = i1 - i < n0 ? i1 - i : n0;
        ag_dnnl_key kd, kw;
        ag_dnnl_prim *pd = dx ? lookup(AG_DNNL_CONV_BWD_DATA, g, false, bf16, n, &kd) : NULL;
        /* pd stays valid: a miss evicts the least recently used entry, never the one just used */
        ag_dnnl_prim *pw = dw ? lookup(AG_DNNL_CONV_BWD_WEIGHTS, g, db != NULL, bf16, n, &kw) : NULL;
        if ((dx && !pd) || (dw && !pw)) {
            ok = false;
            break;
        }
        const bool reuse = n == n0 && n0 < i1 - i0, first = i == i0;
        bool rd[4] = {false, false, false, false}, rw[4] = {false, false, false, false};
        if (pd && reuse && !(ok = reorder_once(pd, &kd, 0, w, &wbuf, ready))) break;
        rd[0] = reuse && ready[0];
        const float *dyi = dy + i * ys;
        /* blocked: dw of a chunk of n0 (all one primitive) stays in its layout, summed into acc */
        const bool blocked = pw && reuse && pw->reorder[2];
        if (blocked && !acc) {
            const size_t bytes = pw->bytes[2];
            if (!(acc = ag__dnnl_scratch(bytes)) || !(bpart = ag__dnnl_scratch(bytes))) {
                ok = false;
                break;
            }
            memset(acc, 0, bytes), memset(bpart, 0, bytes); /* the padding the primitive may not write */
        }
        rw[2] = blocked;
        void *data_d[4] = {rd[0] ? wbuf : (void *)w, (void *)dyi, dx ? dx + i * xs : NULL, NULL};
        void *data_w[4] = {(void *)(x ? x + i * xs : NULL), (void *)dyi,
                           blocked ? (first ? acc : bpart) : first ? dw : part, db && !first ? part + nw : db};
        const dnnl_memory_desc_t *md_d, *md_w;
        if (pd && pw && pd->reorder[1] && pw->reorder[1] && kd.threads == kw.threads &&
            !dnnl_memory_get_memory_desc(pd->args[1].memory, &md_d) &&
            !dnnl_memory_get_memory_desc(pw->args[1].memory, &md_w) && dnnl_memory_desc_equal(md_d, md_w) &&
            (dybuf || (dybuf = ag__dnnl_scratch(pd->bytes[1])))) { /* n0's buffer holds the last chunk too */
            ok = ag__dnnl_reorder_in(pd, &kd, 1, dyi, dybuf);
            data_d[1] = data_w[1] = dybuf;
            rd[1] = rw[1] = true;
        }
        ok = ok && (!pd || ag__dnnl_exec_ready(pd, &kd, data_d, rd)) && (!pw || ag__dnnl_exec_ready(pw, &kw, data_w, rw));
        if (ok && pw && !first) {
            if (blocked) add_into(acc, bpart, (int64_t)(pw->bytes[2] / sizeof(float)));
            else add_into(dw, part, nw);
            if (db) add_into(db, part + nw, g->O);
        }
        if (ok && blocked && (i + n >= i1 || i1 - i - n < n0)) /* the last chunk of n0: acc into dw */
            ok = ag__dnnl_reorder_out(pw, &kw, 2, acc, dw);
    }
    free(acc);
    free(bpart);
    free(part);
    free(wbuf);
    free(dybuf);
    return ok;
}

/* conv_bwd over the whole batch: on the calling thread's primitives, or split over threads
 * (split_threads), each thread's weight and bias gradients into a buffer of its own (thread
 * 0's into dw and db) added into dw and db in thread order. */
static bool conv_bwd(const ag_conv_geom *g, const float *x, const float *w, const float *dy, float *dx, float *dw,
                     float *db) {
    const bool bf16 = ag__autocast == AG_AUTOCAST_BF16;
    const int64_t nmax = chunk_images(g, bf16), nw = g->O * (g->C / g->groups) * g->KH * g->KW;
    const int nt = split_threads(g, nmax);
    int64_t i0, i1;
    if (nt == 1) return bwd_span(g, bf16, 0, g->N, share(g, 0, 1, nmax, &i0, &i1), x, w, dy, dx, dw, db);
    float *parts = NULL; /* threads 1.. nt - 1's dw then db */
    if (dw && !(parts = malloc(sizeof(float) * (size_t)((nw + g->O) * (nt - 1))))) return false;
    bool ok = true;
    int used = nt;
#pragma omp parallel num_threads(nt) reduction(&& : ok)
    {
        omp_set_num_threads(1); /* this thread's primitives made for one thread, as they run */
        const int t = omp_get_thread_num();
        int64_t j0, j1;
        const int64_t n0 = share(g, t, omp_get_num_threads(), nmax, &j0, &j1);
        float *pw = dw && t ? parts + (nw + g->O) * (t - 1) : dw;
        if (t == 0) used = omp_get_num_threads();
        ok = bwd_span(g, bf16, j0, j1, n0, x, w, dy, dx, pw, db && t ? pw + nw : db);
    }
    for (int t = 1; ok && dw && t < used; t++) {
        add_into(dw, parts + (nw + g->O) * (t - 1), nw);
        if (db) add_into(db, parts + (nw + g->O) * (t - 1) + nw, g->O);
    }
    free(parts);
    return ok;
}

bool ag__dnnl_conv_bwd(const ag_conv_geom *g, const float *x, const float *w, const float *dy, float *dx, float *dw,
                       float *db) {
    return conv_bwd(g, x, w, dy, dx, dw, db);
}

bool ag__dnnl_conv_bwd_data(const ag_conv_geom *g, const float *w, const float *dy, float *dx) {
    return conv_bwd(g, NULL, w, dy, dx, NULL, NULL);
}

bool ag__dnnl_conv_bwd_weights(const ag_conv_geom *g, const float *x, const float *dy, float *dw, float *db) {
    return conv_bwd(g, x, NULL, dy, NULL, dw, db);
}

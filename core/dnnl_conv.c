/*
 * core/dnnl_conv.c - oneDNN convolution primitives for ops/conv.c (dnnl_cache.h),
 * cached in the per-thread map of dnnl_cache.c.
 *
 * The key packs two sizes below 2^31 into each of its dims (ag__dnnl_conv_fits
 * guarantees it), so that no two geometries share one.  Each backward primitive
 * is made with the forward primitive descriptor as its hint, as oneDNN requires.
 * Under bf16 autocast (core/autocast.h) each call rounds its two inputs to bf16
 * scratch buffers and runs the bf16 primitive (float32 outputs), or float32 when
 * oneDNN has none.
 */
#include <omp.h>
#include <string.h>
#include "core/autocast.h"
#include "core/dnnl_cache.h"
#include "core/parallel.h"

/* Multiply-adds from which a convolution runs on all threads (below: one, sparing
 * the OpenMP fork for a tiny layer). */
#define CONV_PAR_MACS ((int64_t)1 << 20)

bool ag__dnnl_conv_fits(const ag_conv_geom *g) {
    const int64_t v[] = {g->N,  g->C,  g->H,  g->W,  g->O,  g->KH, g->KW, g->OH, g->OW,
                         g->sh, g->sw, g->dh, g->dw, g->pt, g->pb, g->pl, g->pr, g->groups};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] < 0 || v[i] >= ((int64_t)1 << 31)) return false;
    return g->N && g->C && g->H && g->W && g->O && g->KH && g->KW && g->OH && g->OW && g->groups;
}

static int64_t pack(int64_t hi, int64_t lo) { return hi << 32 | lo; }

/* The key's dims: N, C, H|W, O, KH|KW, OH|OW, sh|sw, dh|dw, pt|pb, pl|pr, groups, has bias. */
static void conv_key(ag_dnnl_key *k, int kind, const ag_conv_geom *g, bool bias) {
    memset(k, 0, sizeof *k);
    k->kind = kind;
    k->dtype = dnnl_f32;
    int64_t macs; /* saturated: it only picks the thread count */
    if (ag__mul_overflow(g->N * g->O, g->OH * g->OW, &macs) || ag__mul_overflow(macs, g->C / g->groups, &macs) ||
        ag__mul_overflow(macs, g->KH * g->KW, &macs))
        macs = INT64_MAX;
    k->threads = omp_in_parallel() ? 1
                 : macs < CONV_PAR_MACS && ag__backend == AG_BACKEND_AUTO ? 1
                                                                          : omp_get_max_threads();
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

/* Memory descriptors of src, weights, bias and dst for key k (plain layouts), of
 * element types ts, tw and td (the bias is float32). */
static dnnl_status_t conv_mds(const ag_dnnl_key *k, dnnl_data_type_t ts, dnnl_data_type_t tw, dnnl_data_type_t td,
                              dnnl_memory_desc_t *src, dnnl_memory_desc_t *wei, dnnl_memory_desc_t *bias,
                              dnnl_memory_desc_t *dst) {
    const int64_t *d = k->dims, G = d[10];
    dnnl_dims_t ds = {d[0], d[1], hi(d[2]), lo(d[2])}, dd = {d[0], d[3], hi(d[5]), lo(d[5])}, db = {d[3]};
    dnnl_dims_t dw = {d[3], d[1], hi(d[4]), lo(d[4])}, dgw = {G, d[3] / G, d[1] / G, hi(d[4]), lo(d[4])};
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_tag(src, 4, ds, ts, dnnl_nchw)) ||
        (st = dnnl_memory_desc_init_by_tag(dst, 4, dd, td, dnnl_nchw)) ||
        (st = dnnl_memory_desc_init_by_tag(bias, 1, db, dnnl_f32, dnnl_a)))
        return st;
    dw[1] = d[1] / G;
    return G > 1 ? dnnl_memory_desc_init_by_tag(wei, 5, dgw, tw, dnnl_goihw)
                 : dnnl_memory_desc_init_by_tag(wei, 4, dw, tw, dnnl_oihw);
}

static dnnl_status_t make_conv(const ag_dnnl_key *k, dnnl_engine_t eng, ag_dnnl_prim *out) {
    const int64_t *d = k->dims;
    dnnl_memory_desc_t bsrc, bwei, bdst; /* the backward's */
    const bool has_bias = d[11] != 0;
    /* float32 throughout, or under bf16 autocast bf16 inputs (src, weights, diff_dst)
     * and float32 outputs (dst, diff_src, diff_weights); the forward made for a hint
     * has the forward's types. */
    const dnnl_data_type_t in = (dnnl_data_type_t)k->dtype, f32 = dnnl_f32;
    dnnl_memory_desc_t src, wei, bias, dst;
    dnnl_status_t st = conv_mds(k, in, in, f32, &src, &wei, &bias, &dst);
    if (!st && k->kind == AG_DNNL_CONV_BWD_DATA) st = conv_mds(k, f32, in, in, &bsrc, &bwei, &bias, &bdst);
    if (!st && k->kind == AG_DNNL_CONV_BWD_WEIGHTS) st = conv_mds(k, in, f32, in, &bsrc, &bwei, &bias, &bdst);
    if (st) return st;
    /* oneDNN counts dilation from 0 (dense), PyTorch from 1. */
    dnnl_dims_t strides = {hi(d[6]), lo(d[6])}, dil = {hi(d[7]) - 1, lo(d[7]) - 1};
    dnnl_dims_t pad_l = {hi(d[8]), hi(d[9])}, pad_r = {lo(d[8]), lo(d[9])};
    dnnl_convolution_desc_t fd, bd;
    if ((st = dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &src, &wei,
                                                          has_bias ? &bias : NULL, &dst, strides, dil, pad_l, pad_r)))
        return st;
    dnnl_primitive_desc_t fpd, pd;
    if ((st = dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL))) return st;
    const dnnl_memory_desc_t *mds[4];
    int ids[4];
    if (k->kind == AG_DNNL_CONV_FWD) {
        pd = fpd;
        fpd = NULL;
        out->nargs = has_bias ? 4 : 3;
        mds[0] = &src, ids[0] = DNNL_ARG_SRC;
        mds[1] = &wei, ids[1] = DNNL_ARG_WEIGHTS;
        mds[2] = &dst, ids[2] = DNNL_ARG_DST;
        mds[3] = &bias, ids[3] = DNNL_ARG_BIAS;
    } else if (k->kind == AG_DNNL_CONV_BWD_DATA) {
        st = dnnl_dilated_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &bsrc, &bwei, &bdst,
                                                              strides, dil, pad_l, pad_r);
        if (!st) st = dnnl_primitive_desc_create(&pd, &bd, NULL, eng, fpd);
        out->nargs = 3;
        mds[0] = &bwei, ids[0] = DNNL_ARG_WEIGHTS;
        mds[1] = &bdst, ids[1] = DNNL_ARG_DIFF_DST;
        mds[2] = &bsrc, ids[2] = DNNL_ARG_DIFF_SRC;
    } else {
        st = dnnl_dilated_convolution_backward_weights_desc_init(&bd, dnnl_convolution_direct, &bsrc, &bwei,
                                                                 has_bias ? &bias : NULL, &bdst, strides, dil, pad_l,
                                                                 pad_r);
        if (!st) st = dnnl_primitive_desc_create(&pd, &bd, NULL, eng, fpd);
        out->nargs = has_bias ? 4 : 3;
        mds[0] = &bsrc, ids[0] = DNNL_ARG_SRC;
        mds[1] = &bdst, ids[1] = DNNL_ARG_DIFF_DST;
        mds[2] = &bwei, ids[2] = DNNL_ARG_DIFF_WEIGHTS;
        mds[3] = &bias, ids[3] = DNNL_ARG_DIFF_BIAS;
    }
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (st) return st;
    st = dnnl_primitive_create(&out->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st) return st;
    for (int i = 0; i < out->nargs; i++) {
        out->args[i].arg = ids[i];
        if ((st = dnnl_memory_create(&out->args[i].memory, mds[i], eng, DNNL_MEMORY_NONE))) return st;
    }
    return dnnl_success;
}

/* Under bf16 autocast: the two inputs of key's primitive (data[0], data[1]: x and w,
 * w and dy, or x and dy) rounded to bfloat16, the outputs written in float32.
 * false (nothing recorded): no memory or no bf16 primitive; the caller runs float32. */
static bool run_bf16(ag_dnnl_key *key, const ag_conv_geom *g, void *const *data) {
    const int64_t nx = g->N * g->C * g->H * g->W, nw = g->O * (g->C / g->groups) * g->KH * g->KW,
                  ny = g->N * g->O * g->OH * g->OW; /* each fits: the tensors exist */
    const int64_t n0 = key->kind == AG_DNNL_CONV_BWD_DATA ? nw : nx,
                  n1 = key->kind == AG_DNNL_CONV_FWD ? nw : ny;
    key->dtype = dnnl_bf16;
    ag_dnnl_prim *p = ag__dnnl_get(key, make_conv);
    if (!p) return false;
    uint16_t *h0 = ag__alloc_n(n0, 2), *h1 = h0 ? ag__alloc_n(n1, 2) : NULL;
    bool ok = false;
    if (h1) {
        ag__f32_to_bf16(h0, data[0], n0);
        ag__f32_to_bf16(h1, data[1], n1);
        void *bf[4] = {h0, h1, data[2], data[3]};
        ok = ag__dnnl_exec(p, key, bf);
    }
    ag__free(h0);
    ag__free(h1);
    return ok;
}

static bool run(int kind, const ag_conv_geom *g, bool bias, void *const *data) {
    if (!ag__dnnl_conv_fits(g)) return false;
    ag_dnnl_key key;
    conv_key(&key, kind, g, bias);
    if (ag__autocast == AG_AUTOCAST_BF16 && run_bf16(&key, g, data)) return true;
    key.dtype = dnnl_f32;
    ag_dnnl_prim *p = ag__dnnl_get(&key, make_conv);
    return p && ag__dnnl_exec(p, &key, data);
}

bool ag__dnnl_conv_fwd(const ag_conv_geom *g, const float *x, const float *w, const float *b, float *y) {
    void *data[4] = {(void *)x, (void *)w, y, (void *)b};
    return run(AG_DNNL_CONV_FWD, g, b != NULL, data);
}

bool ag__dnnl_conv_bwd_data(const ag_conv_geom *g, const float *w, const float *dy, float *dx) {
    void *data[4] = {(void *)w, (void *)dy, dx, NULL};
    return run(AG_DNNL_CONV_BWD_DATA, g, false, data);
}

bool ag__dnnl_conv_bwd_weights(const ag_conv_geom *g, const float *x, const float *dy, float *dw, float *db) {
    void *data[4] = {(void *)x, (void *)dy, dw, db};
    return run(AG_DNNL_CONV_BWD_WEIGHTS, g, db != NULL, data);
}

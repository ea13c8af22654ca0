/*
 * core/dnnl_conv.c - oneDNN convolution primitives for ops/conv.c (dnnl_cache.h),
 * cached in the per-thread map of dnnl_cache.c.
 *
 * The key packs two sizes below 2^31 into each of its dims (ag__dnnl_conv_fits
 * guarantees it), so that no two geometries share one.  Each backward primitive
 * is made with the forward primitive descriptor as its hint, as oneDNN requires.
 */
#include <omp.h>
#include <string.h>
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

/* Memory descriptors of src, weights, bias and dst for key k (plain layouts). */
static dnnl_status_t conv_mds(const ag_dnnl_key *k, dnnl_memory_desc_t *src, dnnl_memory_desc_t *wei,
                              dnnl_memory_desc_t *bias, dnnl_memory_desc_t *dst) {
    const int64_t *d = k->dims, G = d[10];
    dnnl_dims_t ds = {d[0], d[1], hi(d[2]), lo(d[2])}, dd = {d[0], d[3], hi(d[5]), lo(d[5])}, db = {d[3]};
    dnnl_dims_t dw = {d[3], d[1], hi(d[4]), lo(d[4])}, dgw = {G, d[3] / G, d[1] / G, hi(d[4]), lo(d[4])};
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_tag(src, 4, ds, dnnl_f32, dnnl_nchw)) ||
        (st = dnnl_memory_desc_init_by_tag(dst, 4, dd, dnnl_f32, dnnl_nchw)) ||
        (st = dnnl_memory_desc_init_by_tag(bias, 1, db, dnnl_f32, dnnl_a)))
        return st;
    dw[1] = d[1] / G;
    return G > 1 ? dnnl_memory_desc_init_by_tag(wei, 5, dgw, dnnl_f32, dnnl_goihw)
                 : dnnl_memory_desc_init_by_tag(wei, 4, dw, dnnl_f32, dnnl_oihw);
}

static dnnl_status_t make_conv(const ag_dnnl_key *k, dnnl_engine_t eng, ag_dnnl_prim *out) {
    const int64_t *d = k->dims;
    const bool has_bias = d[11] != 0;
    dnnl_memory_desc_t src, wei, bias, dst;
    dnnl_status_t st = conv_mds(k, &src, &wei, &bias, &dst);
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
        st = dnnl_dilated_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &src, &wei, &dst, strides,
                                                              dil, pad_l, pad_r);
        if (!st) st = dnnl_primitive_desc_create(&pd, &bd, NULL, eng, fpd);
        out->nargs = 3;
        mds[0] = &wei, ids[0] = DNNL_ARG_WEIGHTS;
        mds[1] = &dst, ids[1] = DNNL_ARG_DIFF_DST;
        mds[2] = &src, ids[2] = DNNL_ARG_DIFF_SRC;
    } else {
        st = dnnl_dilated_convolution_backward_weights_desc_init(&bd, dnnl_convolution_direct, &src, &wei,
                                                                 has_bias ? &bias : NULL, &dst, strides, dil, pad_l,
                                                                 pad_r);
        if (!st) st = dnnl_primitive_desc_create(&pd, &bd, NULL, eng, fpd);
        out->nargs = has_bias ? 4 : 3;
        mds[0] = &src, ids[0] = DNNL_ARG_SRC;
        mds[1] = &dst, ids[1] = DNNL_ARG_DIFF_DST;
        mds[2] = &wei, ids[2] = DNNL_ARG_DIFF_WEIGHTS;
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

static bool run(int kind, const ag_conv_geom *g, bool bias, void *const *data) {
    if (!ag__dnnl_conv_fits(g)) return false;
    ag_dnnl_key key;
    conv_key(&key, kind, g, bias);
    ag_dnnl_prim *p = ag__dnnl_get(&key, make_conv);
    return p && ag__dnnl_exec(p, &key, data);
}

bool ag__dnnl_conv_fwd(const ag_conv_geom *g, const float *x, const float *w, const float *b, float *y) {
    void *data[4] = {(void *)x, (void *)w, y, (void *)b};
    return run(AG_DNNL_CONV_FWD, g, b != NULL, data);
}

bool ag__dnnl_conv_bwd_data(const ag_conv_geom *g, const float *w, const float *dy, float *dx) {
    void *data[3] = {(void *)w, (void *)dy, dx};
    return run(AG_DNNL_CONV_BWD_DATA, g, false, data);
}

bool ag__dnnl_conv_bwd_weights(const ag_conv_geom *g, const float *x, const float *dy, float *dw, float *db) {
    void *data[4] = {(void *)x, (void *)dy, dw, db};
    return run(AG_DNNL_CONV_BWD_WEIGHTS, g, db != NULL, data);
}

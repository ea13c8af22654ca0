/*
 * core/dnnl_rnn.c - oneDNN's vanilla_rnn, lstm and lbr_gru primitives for one
 * layer (dnnl_rnn.h), through the per-thread primitive cache.  The weights are
 * given in plain layouts the primitives take as they are (ldigo forward, ldgoi
 * backward, measured on oneDNN 2.6.3), so no reorder runs inside a call; the
 * conversions between those layouts and PyTorch's are transposes by a reorder
 * primitive of their own (ag__dnnl_transpose).
 */
#include <omp.h>
#include "core/dnnl_rnn.h"
#include "core/parallel.h"

/* Cache kinds above dnnl_cache.h's enum. */
enum { RNN_FWD = 32, RNN_BWD, RNN_TRANSPOSE };

/* The arguments of the primitives, in the order their data pointers are passed;
 * the *_C ones are an LSTM's only. */
static const int fwd_args[10] = {DNNL_ARG_SRC_LAYER,   DNNL_ARG_SRC_ITER,   DNNL_ARG_SRC_ITER_C, DNNL_ARG_WEIGHTS_LAYER,
                                 DNNL_ARG_WEIGHTS_ITER, DNNL_ARG_BIAS,       DNNL_ARG_DST_LAYER,  DNNL_ARG_DST_ITER,
                                 DNNL_ARG_DST_ITER_C,   DNNL_ARG_WORKSPACE};
static const int bwd_args[9] = {DNNL_ARG_DIFF_SRC_LAYER,   DNNL_ARG_DIFF_SRC_ITER,   DNNL_ARG_DIFF_SRC_ITER_C,
                                DNNL_ARG_DIFF_WEIGHTS_LAYER, DNNL_ARG_DIFF_WEIGHTS_ITER, DNNL_ARG_DIFF_BIAS,
                                DNNL_ARG_DIFF_DST_LAYER,   DNNL_ARG_DIFF_DST_ITER,   DNNL_ARG_DIFF_DST_ITER_C};

static bool is_cell_state(int arg) {
    return arg == DNNL_ARG_SRC_ITER_C || arg == DNNL_ARG_DST_ITER_C || arg == DNNL_ARG_DIFF_SRC_ITER_C ||
           arg == DNNL_ARG_DIFF_DST_ITER_C;
}

typedef struct rnn_mds {
    dnnl_memory_desc_t x, state, wl, wi, wlb, wib, bias, y;
} rnn_mds;

static dnnl_status_t make_mds(const ag_dnnl_key *k, rnn_mds *m) {
    const int64_t D = k->dims[0], T = k->dims[1], N = k->dims[2], I = k->dims[3], H = k->dims[4];
    const int64_t G = k->alg == AG_DNNL_RNN_LSTM ? 4 : k->alg == AG_DNNL_RNN_GRU ? 3 : 1;
    const int64_t Gb = k->alg == AG_DNNL_RNN_GRU ? 4 : G;
    dnnl_dims_t dx = {T, N, I}, ds = {1, D, N, H}, dwl = {1, D, I, G, H}, dwi = {1, D, H, G, H}, db = {1, D, Gb, H},
                dy = {T, N, D * H};
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_tag(&m->x, 3, dx, dnnl_f32, dnnl_tnc)) ||
        (st = dnnl_memory_desc_init_by_tag(&m->state, 4, ds, dnnl_f32, dnnl_ldnc)) ||
        (st = dnnl_memory_desc_init_by_tag(&m->wl, 5, dwl, dnnl_f32, dnnl_ldigo)) ||
        (st = dnnl_memory_desc_init_by_tag(&m->wi, 5, dwi, dnnl_f32, dnnl_ldigo)) ||
        (st = dnnl_memory_desc_init_by_tag(&m->wlb, 5, dwl, dnnl_f32, dnnl_ldgoi)) ||
        (st = dnnl_memory_desc_init_by_tag(&m->wib, 5, dwi, dnnl_f32, dnnl_ldgoi)) ||
        (st = dnnl_memory_desc_init_by_tag(&m->bias, 4, db, dnnl_f32, dnnl_ldgo)))
        return st;
    return dnnl_memory_desc_init_by_tag(&m->y, 3, dy, dnnl_f32, dnnl_tnc);
}

/* The forward-training descriptor (wl, wi: the weights' layouts). */
static dnnl_status_t fwd_desc(const ag_dnnl_key *k, const rnn_mds *m, dnnl_rnn_desc_t *d) {
    dnnl_rnn_direction_t dir = k->dims[0] == 2 ? dnnl_bidirectional_concat : dnnl_unidirectional_left2right;
    dnnl_prop_kind_t pk = dnnl_forward_training;
    switch (k->alg) {
    case AG_DNNL_RNN_LSTM:
        return dnnl_lstm_forward_desc_init(d, pk, dir, &m->x, &m->state, &m->state, &m->wl, &m->wi, &m->bias, &m->y,
                                           &m->state, &m->state, 0);
    case AG_DNNL_RNN_GRU:
        return dnnl_lbr_gru_forward_desc_init(d, pk, dir, &m->x, &m->state, &m->wl, &m->wi, &m->bias, &m->y, &m->state, 0);
    default:
        return dnnl_vanilla_rnn_forward_desc_init(d, pk, k->alg == AG_DNNL_RNN_RELU ? dnnl_eltwise_relu : dnnl_eltwise_tanh,
                                                  dir, &m->x, &m->state, &m->wl, &m->wi, &m->bias, &m->y, &m->state, 0,
                                                  0, 0);
    }
}

/* The backward descriptor: the weights ldgoi, their gradients ldigo.  oneDNN 2.6.3 refuses ldgoi
 * gradients (PyTorch's layout, which would spare the caller's transposes): the backward primitive
 * descriptor is not created, so no workspace size and the whole layer runs the reference path
 * (tried in session 20). */
static dnnl_status_t bwd_desc(const ag_dnnl_key *k, const rnn_mds *m, dnnl_rnn_desc_t *d) {
    dnnl_rnn_direction_t dir = k->dims[0] == 2 ? dnnl_bidirectional_concat : dnnl_unidirectional_left2right;
    switch (k->alg) {
    case AG_DNNL_RNN_LSTM:
        return dnnl_lstm_backward_desc_init(d, dnnl_backward, dir, &m->x, &m->state, &m->state, &m->wlb, &m->wib,
                                            &m->bias, &m->y, &m->state, &m->state, &m->x, &m->state, &m->state, &m->wl,
                                            &m->wi, &m->bias, &m->y, &m->state, &m->state, 0);
    case AG_DNNL_RNN_GRU:
        return dnnl_lbr_gru_backward_desc_init(d, dnnl_backward, dir, &m->x, &m->state, &m->wlb, &m->wib, &m->bias,
                                               &m->y, &m->state, &m->x, &m->state, &m->wl, &m->wi, &m->bias, &m->y,
                                               &m->state, 0);
    default:
        return dnnl_vanilla_rnn_backward_desc_init(d, dnnl_backward,
                                                   k->alg == AG_DNNL_RNN_RELU ? dnnl_eltwise_relu : dnnl_eltwise_tanh, dir,
                                                   &m->x, &m->state, &m->wlb, &m->wib, &m->bias, &m->y, &m->state,
                                                   &m->x, &m->state, &m->wl, &m->wi, &m->bias, &m->y, &m->state, 0, 0,
                                                   0);
    }
}

/* The memory descriptor of argument arg (ws: the workspace's, from the forward pd). */
static const dnnl_memory_desc_t *arg_md(const rnn_mds *m, int arg, bool bwd, const dnnl_memory_desc_t *ws) {
    switch (arg) {
    case DNNL_ARG_SRC_LAYER: case DNNL_ARG_DIFF_SRC_LAYER: return &m->x;
    case DNNL_ARG_DST_LAYER: case DNNL_ARG_DIFF_DST_LAYER: return &m->y;
    case DNNL_ARG_WEIGHTS_LAYER: return bwd ? &m->wlb : &m->wl;
    case DNNL_ARG_WEIGHTS_ITER: return bwd ? &m->wib : &m->wi;
    case DNNL_ARG_DIFF_WEIGHTS_LAYER: return &m->wl;
    case DNNL_ARG_DIFF_WEIGHTS_ITER: return &m->wi;
    case DNNL_ARG_BIAS: case DNNL_ARG_DIFF_BIAS: return &m->bias;
    case DNNL_ARG_WORKSPACE: return ws;
    default: return &m->state;
    }
}

static dnnl_status_t make_rnn(const ag_dnnl_key *k, dnnl_engine_t eng, ag_dnnl_prim *out) {
    rnn_mds m;
    dnnl_rnn_desc_t fd, bd;
    dnnl_primitive_desc_t fpd, pd = NULL;
    dnnl_status_t st = make_mds(k, &m);
    if (!st) st = fwd_desc(k, &m, &fd);
    if (!st) st = dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL);
    if (st) return st;
    const bool bwd = k->kind == RNN_BWD, lstm = k->alg == AG_DNNL_RNN_LSTM;
    dnnl_memory_desc_t ws = *dnnl_primitive_desc_query_md(fpd, dnnl_query_workspace_md, 0);
    if (bwd) {
        st = bwd_desc(k, &m, &bd);
        if (!st) st = dnnl_primitive_desc_create(&pd, &bd, NULL, eng, fpd);
        dnnl_primitive_desc_destroy(fpd);
    } else {
        pd = fpd;
    }
    if (!st) st = dnnl_primitive_create(&out->prim, pd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    for (int i = 0; !st && i < 10 + (bwd ? 9 : 0); i++) {
        int arg = i < 10 ? fwd_args[i] : bwd_args[i - 10];
        if (is_cell_state(arg) && !lstm) continue;
        dnnl_exec_arg_t *a = &out->args[out->nargs++];
        a->arg = arg;
        st = dnnl_memory_create(&a->memory, arg_md(&m, arg, bwd, &ws), eng, DNNL_MEMORY_NONE);
    }
    return st;
}

static bool fits(const ag_rnn_geom *g) {
    const int64_t lim = (int64_t)1 << 31;
    return (g->dirs == 1 || g->dirs == 2) && g->cell >= AG_DNNL_RNN_TANH && g->cell <= AG_DNNL_RNN_GRU && g->T > 0 &&
           g->T < lim && g->N > 0 && g->N < lim && g->I > 0 && g->I < lim && g->H > 0 && g->H < lim;
}

static ag_dnnl_prim *get(int kind, const ag_rnn_geom *g, ag_dnnl_key *key) {
    if (!fits(g)) return NULL;
    *key = (ag_dnnl_key){.kind = kind, .alg = g->cell, .dtype = dnnl_f32,
                         .threads = omp_in_parallel() ? 1 : omp_get_max_threads(),
                         .dims = {g->dirs, g->T, g->N, g->I, g->H}};
    return ag__dnnl_get(key, make_rnn);
}

int64_t ag__dnnl_rnn_workspace(const ag_rnn_geom *g) {
    ag_dnnl_key key;
    ag_dnnl_prim *f = get(RNN_FWD, g, &key);
    if (!f || !get(RNN_BWD, g, &key)) return -1;
    const dnnl_memory_desc_t *md;
    if (dnnl_memory_get_memory_desc(f->args[f->nargs - 1].memory, &md)) return -1;
    return (int64_t)dnnl_memory_desc_get_size(md);
}

/* Runs the primitive of kind with the pointers given in fwd_args (then bwd_args)
 * order, leaving out the cell states unless an LSTM. */
static bool run(int kind, const ag_rnn_geom *g, void *const *all) {
    ag_dnnl_key key;
    ag_dnnl_prim *p = get(kind, g, &key);
    if (!p) return false;
    void *data[AG_DNNL_MAX_ARGS];
    int n = 0;
    for (int i = 0; i < 10 + (kind == RNN_BWD ? 9 : 0); i++) {
        int arg = i < 10 ? fwd_args[i] : bwd_args[i - 10];
        if (!is_cell_state(arg) || g->cell == AG_DNNL_RNN_LSTM) data[n++] = all[i];
    }
    return n == p->nargs && ag__dnnl_exec(p, &key, data);
}

bool ag__dnnl_rnn_fwd(const ag_rnn_geom *g, const float *x, const float *hx, const float *cx, const float *wl,
                      const float *wi, const float *b, float *y, float *hy, float *cy, void *ws) {
    void *all[10] = {(void *)x, (void *)hx, (void *)cx, (void *)wl, (void *)wi, (void *)b, y, hy, cy, ws};
    return run(RNN_FWD, g, all);
}

bool ag__dnnl_rnn_bwd(const ag_rnn_geom *g, const float *x, const float *hx, const float *cx, const float *wl,
                      const float *wi, const float *b, const float *y, const float *hy, const float *cy, void *ws,
                      const float *dy, const float *dhy, const float *dcy, float *dx, float *dhx, float *dcx,
                      float *dwl, float *dwi, float *db) {
    void *all[19] = {(void *)x, (void *)hx, (void *)cx, (void *)wl, (void *)wi, (void *)b, (void *)y, (void *)hy,
                     (void *)cy, ws, dx, dhx, dcx, dwl, dwi, db, (void *)dy, (void *)dhy, (void *)dcy};
    return run(RNN_BWD, g, all);
}

/* The reorder of key dims {rows, cols, src_rs, dst_rs}: [rows, cols] read with strides
 * (src_rs, 1), written with (1, dst_rs). */
static dnnl_status_t make_transpose(const ag_dnnl_key *k, dnnl_engine_t eng, ag_dnnl_prim *out) {
    dnnl_dims_t d = {k->dims[0], k->dims[1]}, ss = {k->dims[2], 1}, ds = {1, k->dims[3]};
    dnnl_memory_desc_t md[2];
    dnnl_primitive_desc_t pd;
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_strides(&md[0], 2, d, dnnl_f32, ss)) ||
        (st = dnnl_memory_desc_init_by_strides(&md[1], 2, d, dnnl_f32, ds)) ||
        (st = dnnl_reorder_primitive_desc_create(&pd, &md[0], eng, &md[1], eng, NULL)))
        return st;
    st = dnnl_primitive_create(&out->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    for (int i = 0; !st && i < 2; i++) {
        dnnl_exec_arg_t *a = &out->args[out->nargs++];
        a->arg = i ? DNNL_ARG_TO : DNNL_ARG_FROM;
        st = dnnl_memory_create(&a->memory, &md[i], eng, DNNL_MEMORY_NONE);
    }
    return st;
}

bool ag__dnnl_transpose(float *dst, int64_t dst_rs, const float *src, int64_t src_rs, int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0 || src_rs < cols || dst_rs < rows) return false;
    ag_dnnl_key key = {.kind = RNN_TRANSPOSE, .dtype = dnnl_f32,
                       .threads = omp_in_parallel() ? 1 : omp_get_max_threads(), .dims = {rows, cols, src_rs, dst_rs}};
    ag_dnnl_prim *p = ag__dnnl_get(&key, make_transpose);
    void *data[2] = {(void *)src, dst};
    return p && ag__dnnl_exec(p, &key, data);
}

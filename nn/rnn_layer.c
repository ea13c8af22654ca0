/*
 * rnn_layer.c - the reference path of a recurrent layer: one direction over a
 * sequence as the cell steps of nn/rnn_cell.c, composed of differentiable ops
 * (any float dtype, any order of derivatives), and a whole layer of one or two
 * directions.  nn/rnn.c runs the layers with it (or with nn/rnn_fused.c), and
 * the fused layer's adjoint falls back to it.
 */
#include "nn/rnn.h"
#include "agrad/autograd.h"
#include "agrad/ops.h"

/* The steps of x [T, ...] as T tensors x[t], recorded as one node: dx = stack(dy_t).  Taken
 * with T ag_select views instead, backward would send each step's gradient back as a
 * zero-padded copy of all of x: T² work. */
static ag_status unbind_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)ctx, (void)nin;
    for (int t = 0; t < nout; t++)
        if (!(out[t] = ag_select(in[0], 0, t))) return ag_last_status();
    return AG_OK;
}

static ag_status unbind_backward(ag_ctx *ctx, ag_tensor *const *grad_out, int nout, ag_tensor **grad_in, int nin) {
    (void)ctx, (void)nin;
    grad_in[0] = ag_stack(grad_out, nout, 0);
    return grad_in[0] ? AG_OK : ag_last_status();
}

static const ag_function_type unbind_steps = {.name = "UnbindSteps", .forward = unbind_forward, .backward = unbind_backward};

ag_status ag__rnn_direction(ag__rnn_mode mode, ag_tensor *const w[4], bool reverse, ag_tensor *x, ag_tensor *h,
                            ag_tensor *c, ag_tensor *const *keep, ag_tensor *const *drop, ag_tensor **steps,
                            ag_tensor **gi, ag_tensor **out, ag_tensor **h_n, ag_tensor **c_n) {
    int64_t T = ag_size(x, 0);
    ag_tensor *gi_all = ag_linear(x, w[0], w[2]);
    if (!gi_all) return ag_last_status();
    if (ag_dual_level_open()) { /* forward mode: views, whose tangent rule UnbindSteps lacks */
        for (int64_t t = 0; t < T; t++)
            if (!(gi[t] = ag_select(gi_all, 0, t))) return ag_last_status();
    } else if (ag_function_apply(&unbind_steps, &gi_all, 1, gi, (int)T, NULL)) {
        return ag_last_status();
    }
    for (int64_t s = 0; s < T; s++) {
        int64_t t = reverse ? T - 1 - s : s;
        ag_tensor *c_new = NULL;
        ag_tensor *h_new = ag__rnn_step(mode, gi[t], h, c, w[1], w[3], &c_new);
        if (!h_new) return ag_last_status();
        if (keep) { /* a sequence that has ended keeps its state and outputs zeros */
            h_new = ag_where(keep[t], h_new, h);
            if (c) c_new = ag_where(keep[t], c_new, c);
            steps[t] = ag_masked_fill(h_new, drop[t], 0);
        } else {
            steps[t] = h_new;
        }
        h = h_new;
        c = c_new;
        if (!steps[t] || (c_n && !c)) return ag_last_status();
    }
    *out = ag_stack(steps, (int)T, 0);
    *h_n = h;
    if (c_n) *c_n = c;
    return *out ? AG_OK : ag_last_status();
}

ag_status ag__rnn_layer_reference(ag__rnn_mode mode, int dirs, ag_tensor *x, ag_tensor *h0, ag_tensor *c0,
                                  ag_tensor *const *w, ag_tensor **y, ag_tensor **h_n, ag_tensor **c_n) {
    int64_t T = ag_size(x, 0);
    bool lstm = mode == AG__RNN_LSTM;
    ag_tensor **buf = ag__alloc_n(2 * T, sizeof *buf), *outs[2] = {NULL, NULL}, *hs[2] = {NULL, NULL},
              *cs[2] = {NULL, NULL};
    if (!buf) return ag_last_status();
    ag_status st = AG_OK;
    for (int d = 0; d < dirs && !st; d++)
        st = ag__rnn_direction(mode, w + 4 * d, d == 1, x, ag_select(h0, 0, d), lstm ? ag_select(c0, 0, d) : NULL, NULL,
                           NULL, buf, buf + T, &outs[d], &hs[d], lstm ? &cs[d] : NULL);
    ag__free(buf);
    if (st) return st;
    *y = dirs == 2 ? ag_cat(outs, 2, 2) : outs[0];
    *h_n = ag_stack(hs, dirs, 0);
    if (lstm) *c_n = ag_stack(cs, dirs, 0);
    return *y && *h_n && (!lstm || *c_n) ? AG_OK : ag_last_status();
}


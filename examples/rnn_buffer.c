/*
 * rnn_buffer.c - a recurrent net that writes each step's hidden state into a buffer
 * in place, h = tanh(W·h + U·x[t]); H[t] = h, as PyTorch code often does (`H[t] = h`
 * is index assignment: ag_copy_ into the view ag_select(H, 0, t)).  Each write is
 * recorded on the buffer as PyTorch's CopySlices, and the output reads the whole
 * buffer, so backward runs through the buffer's history into every step.  (Reading
 * h back from the buffer for the next step would fail backward, in agrad as in
 * PyTorch: the matmul saved the row the next write changed.)  The program checks
 * the gradients against the same net built out of place (the states stacked with
 * ag_stack), then trains it to predict the next value of a sine wave.
 *
 *     rnn_buffer [--steps N] [--hidden H] [--lr LR] [--seed S]
 *
 * Last line: grad_max_diff (buffer vs stack), grad_fn_buffer (1 when the buffer's
 * node is CopySlices), loss_first, loss_last, loss_ratio (last over first).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "agrad/agrad.h"
#include "args.h"

#define T 24 /* time steps */

static int steps = 300, hidden = 8, seed = 7;
static double lr = 0.02;
static arg args[] = {{"steps", 'i', &steps, "training steps"},
                     {"hidden", 'i', &hidden, "hidden units"},
                     {"lr", 'd', &lr, "Adam's learning rate"},
                     {"seed", 'i', &seed, "random seed"}};

typedef struct net {
    ag_tensor *w, *u, *v; /* hidden×hidden, hidden×1, 1×hidden */
} net;

/* The predictions [T, 1] for the inputs x [T, 1]; in_place: the hidden states go
 * into a zero buffer H [T, hidden] row by row, else they are stacked. */
static ag_tensor *forward(const net *n, ag_tensor *x, bool in_place, const char **buf_grad_fn) {
    ag_tensor *rows[T];
    ag_tensor *buf = in_place ? ag_zeros(AG_SHAPE(T, hidden), AG_F64) : NULL;
    ag_tensor *h = ag_zeros(AG_SHAPE(hidden), AG_F64);
    for (int t = 0; t < T; t++) {
        h = ag_tanh(ag_add(ag_matmul(n->w, h), ag_matmul(n->u, ag_select(x, 0, t))));
        if (in_place) ag_copy_(ag_select(buf, 0, t), h); /* H[t] = h */
        else rows[t] = h;
    }
    if (buf_grad_fn) *buf_grad_fn = in_place ? ag_grad_fn_name(buf) : NULL;
    return ag_matmul(in_place ? buf : ag_stack(rows, T, 0), ag_t(n->v));
}

static ag_tensor *loss_of(const net *n, ag_tensor *x, ag_tensor *y, bool in_place, const char **buf_grad_fn) {
    return ag_mse_loss(forward(n, x, in_place, buf_grad_fn), y, NULL);
}

/* max |a - b| */
static double max_diff(const ag_tensor *a, const ag_tensor *b) {
    double m = 0;
    const double *p = ag_data(a), *q = ag_data(b);
    for (int64_t i = 0; i < ag_numel(a); i++) m = fmax(m, fabs(p[i] - q[i]));
    return m;
}

int main(int argc, char **argv) {
    int rc = args_parse(argc, argv, "A recurrent net that writes its hidden states into a buffer in place (CopySlices).",
                        args, NARGS(args));
    if (rc >= 0) return rc;
    if (hidden < 1 || steps < 1) {
        fprintf(stderr, "rnn_buffer: --hidden and --steps must be positive\n");
        return 2;
    }
    ag_manual_seed((uint64_t)seed);
    ag_scope_begin();
    double xs[T], ys[T];
    for (int t = 0; t < T; t++) xs[t] = sin(0.4 * t), ys[t] = sin(0.4 * (t + 1));
    ag_tensor *x = ag_from_data(xs, AG_SHAPE(T, 1), AG_F64), *y = ag_from_data(ys, AG_SHAPE(T, 1), AG_F64);
    net n = {ag_requires_grad_(ag_mul_scalar(ag_randn(AG_SHAPE(hidden, hidden), AG_F64), 0.5 / sqrt(hidden)), true),
             ag_requires_grad_(ag_randn(AG_SHAPE(hidden, 1), AG_F64), true),
             ag_requires_grad_(ag_mul_scalar(ag_randn(AG_SHAPE(1, hidden), AG_F64), 0.5), true)};
    ag_tensor *params[3] = {n.w, n.u, n.v};

    /* The gradients of the buffer version against the out-of-place one. */
    double diff = 0;
    const char *fn = NULL; /* the buffer's grad_fn after the writes */
    ag_tensor *g[2][3];
    for (int k = 0; k < 2; k++) {
        ag_scope_begin();
        for (int i = 0; i < 3; i++) ag_zero_grad(params[i]);
        if (ag_backward(loss_of(&n, x, y, k == 0, k == 0 ? &fn : NULL)) != AG_OK) {
            fprintf(stderr, "rnn_buffer: %s\n", ag_last_error());
            return 1;
        }
        ag_scope_end();
        for (int i = 0; i < 3; i++) g[k][i] = ag_clone(ag_grad(params[i]));
    }
    for (int i = 0; i < 3; i++) diff = fmax(diff, max_diff(g[0][i], g[1][i]));
    bool copyslices = fn && strcmp(fn, "CopySlices") == 0;
    printf("gradients of the buffer version vs the stacked one: max |difference| %.3g; H's grad_fn: %s\n", diff,
           fn ? fn : "(none)");

    /* Training. */
    ag_adam_options ao = ag_adam_defaults();
    ao.lr = lr;
    ag_optimizer *opt = ag_adam_new(params, 3, &ao);
    double first = 0, last = 0;
    for (int s = 0; s < steps; s++) {
        ag_scope_begin();
        ag_optimizer_zero_grad(opt);
        ag_tensor *loss = loss_of(&n, x, y, true, NULL);
        last = ag_item(loss);
        if (s == 0) first = last;
        if (ag_backward(loss) != AG_OK || ag_optimizer_step(opt) != AG_OK) {
            fprintf(stderr, "rnn_buffer: %s\n", ag_last_error());
            return 1;
        }
        ag_scope_end();
        if (s % 100 == 0 || s == steps - 1) printf("step %4d  loss %.5f\n", s, last);
    }
    ag_optimizer_free(opt);
    ag_scope_end();
    printf("grad_max_diff=%.3g grad_fn_buffer=%d loss_first=%.5f loss_last=%.5f loss_ratio=%.4f\n", diff, copyslices,
           first, last, last / first);
    return 0;
}

/*
 * custom_function.c - two differentiable functions written by the user in C (the
 * form of torch.autograd.Function, docs/functions.md), training a tiny model:
 *
 *   - a numerically stable softplus, log(1 + e^x) = max(x, 0) + log(1 + e^-|x|),
 *     that saves its input for the backward dx = dy·σ(x);
 *   - a straight-through estimator (STE) that rounds weights to a grid of step
 *     1/4 in the forward and passes the gradient through unchanged in the backward;
 *   - softplus_, the same softplus overwriting its input (ctx.mark_dirty), which
 *     saves its output instead, dx = dy·(1 - e^-y): no second buffer, and the
 *     gradients of the in-place form equal the other's; its backward is written in
 *     agrad ops, so it differentiates twice (create_graph, gradgradcheck) too.
 *
 * The model softplus(x·q(w) + b), with q the STE quantizer, learns a teacher whose
 * weights lie on the grid.  The same model with the built-in ag_round, whose
 * gradient is 0, never moves its weights.
 *
 *     ./build/examples/custom_function
 *
 * Ends with one line: softplus_max_diff=0 softplus_gradcheck=1 inplace_grad_diff=0 ...
 */
#include <math.h>
#include <stdio.h>
#include <agrad/agrad.h>
#include "args.h"

static int steps = 300, seed = 0;
static double lr = 0.5;
static arg args[] = {
    {"steps", 'i', &steps, "training steps (full batch)"},
    {"lr", 'd', &lr, "learning rate"},
    {"seed", 'i', &seed, "seed of the data and the initial weights"},
};

/* ---- softplus: forward and backward ------------------------------------------------------- */
static ag_status softplus_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    ag_tensor *x = in[0]; /* y = max(x, 0) + log(1 + e^-|x|): no overflow for large |x| */
    out[0] = ag_add(ag_relu(x), ag_log(ag_add_scalar(ag_exp(ag_neg(ag_abs(x))), 1)));
    if (!out[0]) return ag_last_status();
    return ag_ctx_save_for_backward(ctx, &x, 1); /* ctx.save_for_backward(x) */
}

static ag_status softplus_backward(ag_ctx *ctx, ag_tensor *const *grad_out, int nout, ag_tensor **grad_in, int nin) {
    (void)nout, (void)nin;
    ag_tensor *x = ag_ctx_saved(ctx, 0);
    grad_in[0] = ag_mul(grad_out[0], ag_sigmoid(x)); /* dx = dy·σ(x) */
    return grad_in[0] ? AG_OK : ag_last_status();
}

static const ag_function_type stable_softplus = {.name = "StableSoftplus", .forward = softplus_forward, .backward = softplus_backward};

static ag_tensor *softplus(ag_tensor *x) { return ag_function_apply1(&stable_softplus, &x, 1, NULL); }

/* ---- softplus_ in place: the input is marked dirty and returned ----------------------------- */
static ag_status softplus_inplace_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    ag_tensor *x = in[0];
    if (ag_ctx_mark_dirty(ctx, 0)) return ag_last_status(); /* ctx.mark_dirty(x), before writing */
    ag_tensor *y = ag_add(ag_relu(x), ag_log(ag_add_scalar(ag_exp(ag_neg(ag_abs(x))), 1)));
    out[0] = y ? ag_copy_(x, y) : NULL;                       /* x.copy_(softplus(x)); return x */
    return out[0] ? ag_ctx_save_for_backward(ctx, out, 1) : ag_last_status(); /* saves the output */
}

static ag_status softplus_inplace_backward(ag_ctx *ctx, ag_tensor *const *grad_out, int nout, ag_tensor **grad_in,
                                           int nin) {
    (void)nout, (void)nin;
    ag_tensor *y = ag_ctx_saved(ctx, 0); /* dx = dy·σ(x) = dy·(1 - e^-y) */
    grad_in[0] = ag_mul(grad_out[0], ag_rsub_scalar(1, ag_exp(ag_neg(y))));
    return grad_in[0] ? AG_OK : ag_last_status();
}

static const ag_function_type softplus_inplace = {.name = "Softplus_", .forward = softplus_inplace_forward, .backward = softplus_inplace_backward};

/* ---- the straight-through quantizer: q(w) = round(4w) / 4, dq/dw taken as 1 ------------------ */
static ag_status quantize_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)ctx, (void)nin, (void)nout;
    out[0] = ag_div_scalar(ag_round(ag_mul_scalar(in[0], 4)), 4);
    return out[0] ? AG_OK : ag_last_status();
}

static ag_status quantize_backward(ag_ctx *ctx, ag_tensor *const *grad_out, int nout, ag_tensor **grad_in, int nin) {
    (void)ctx, (void)nout, (void)nin;
    grad_in[0] = grad_out[0]; /* dw = dy: straight through */
    return AG_OK;
}

static const ag_function_type quantize_ste = {.name = "QuantizeSTE", .forward = quantize_forward, .backward = quantize_backward};

/* ---- training ---------------------------------------------------------------------------------- */
/* Mean squared error of softplus(x·q(w) + b) against y, q the STE or the built-in round. */
static ag_tensor *loss_of(ag_tensor *x, ag_tensor *y, ag_tensor *w, ag_tensor *b, bool ste) {
    ag_tensor *q = ste ? ag_function_apply1(&quantize_ste, &w, 1, NULL) : ag_div_scalar(ag_round(ag_mul_scalar(w, 4)), 4);
    ag_tensor *d = ag_sub(softplus(ag_add(ag_matmul(x, q), b)), y);
    return ag_mean(ag_mul(d, d));
}

/* Trains w [3] and b from fixed initial values by gradient descent; returns the
 * final loss, and the summed |gradient of w| of the first step in *grad0. */
static double train(ag_tensor *x, ag_tensor *y, ag_tensor *w, ag_tensor *b, bool ste, double *grad0) {
    double loss = NAN;
    for (int step = 0; step < steps; step++) {
        ag_scope_begin();
        ag_tensor *l = loss_of(x, y, w, b, ste);
        if (ag_backward(l)) {
            ag_scope_end();
            return NAN;
        }
        loss = ag_item(l);
        if (step == 0) *grad0 = ag_item(ag_sum(ag_abs(ag_grad(w))));
        ag_no_grad_begin();
        ag_add_(w, ag_grad(w), -lr);
        ag_add_(b, ag_grad(b), -lr);
        ag_no_grad_end();
        ag_zero_grad(w);
        ag_zero_grad(b);
        ag_scope_end();
    }
    ag_scope_begin();
    ag_no_grad_begin();
    loss = ag_item(loss_of(x, y, w, b, ste)); /* the loss of the final weights */
    ag_no_grad_end();
    ag_scope_end();
    return loss;
}

static ag_tensor *softplus_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return softplus(in[0]);
}

/* softplus_ applied in place to 3·x (a non-leaf), squared */
static ag_tensor *softplus_inplace_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *h = ag_mul_scalar(in[0], 3);
    h = ag_function_apply1(&softplus_inplace, &h, 1, NULL);
    return h ? ag_mul(h, h) : NULL;
}

int main(int argc, char **argv) {
    int rc = args_parse(argc, argv, "A user-defined softplus and straight-through quantizer train a tiny model.", args,
                        NARGS(args));
    if (rc >= 0) return rc;
    ag_manual_seed((uint64_t)seed);
    ag_scope_begin();

    /* The user's softplus against the built-in one, values far into both tails, and gradcheck. */
    double v[6] = {-800, -30, -0.5, 0, 2, 800};
    ag_tensor *t = ag_from_data(v, AG_SHAPE(6), AG_F64);
    double sp_diff = 0;
    for (int i = 0; i < 6; i++)
        sp_diff = fmax(sp_diff, fabs(ag_get(softplus(t), (int64_t[]){i}) - ag_get(ag_softplus(t, 1, 1e9), (int64_t[]){i})));
    ag_tensor *g = ag_requires_grad_(ag_randn(AG_SHAPE(4, 3), AG_F64), true);
    bool gc = ag_gradcheck(softplus_fn, NULL, &g, 1, &(ag_gradcheck_opts){.quiet = true}, NULL) == AG_OK;
    printf("StableSoftplus: max |difference| from ag_softplus %.3g over x in [-800, 800]; gradcheck %s\n", sp_diff,
           gc ? "passes" : "fails");

    /* softplus_ on a non-leaf h = 3·g (in place: h itself comes back, grad_fn Softplus_Backward),
     * against the out-of-place function: the same gradient of g. */
    ag_tensor *h = ag_mul_scalar(g, 3), *sp = softplus(h), *g_ref;
    ag_backward(ag_sum(ag_mul(sp, sp)));
    g_ref = ag_clone(ag_grad(g));
    ag_zero_grad(g);
    h = ag_mul_scalar(g, 3);
    ag_tensor *h_in = ag_function_apply1(&softplus_inplace, &h, 1, NULL);
    ag_backward(ag_sum(ag_mul(h_in, h_in)));
    double ip_diff = h_in == h ? ag_item(ag_max(ag_abs(ag_sub(ag_grad(g), g_ref)))) : INFINITY;
    printf("Softplus_ (in place, %s): max |gradient difference| from StableSoftplus %.3g\n",
           h_in ? ag_grad_fn_name(h_in) : ag_last_error(), ip_diff);
    /* second derivatives through the dirty input: its saved output comes back with its graph */
    bool ggc = ag_gradgradcheck(softplus_inplace_fn, NULL, &g, 1, &(ag_gradcheck_opts){.quiet = true}, NULL) == AG_OK;
    printf("Softplus_: gradgradcheck (create_graph through the in-place function) %s\n", ggc ? "passes" : "fails");

    /* A teacher on the grid of step 1/4 makes the targets. */
    ag_tensor *x = ag_randn(AG_SHAPE(64, 3), AG_F32);
    double teacher_w[3] = {1.25, -0.75, 0.5};
    ag_tensor *tw = ag_from_data((float[]){1.25f, -0.75f, 0.5f}, AG_SHAPE(3), AG_F32);
    ag_tensor *y = softplus(ag_add_scalar(ag_matmul(x, tw), 0.25));
    ag_tensor *init = ag_mul_scalar(ag_randn(AG_SHAPE(3), AG_F32), 0.1);

    double grad_ste = 0, grad_round = 0;
    ag_tensor *w = ag_requires_grad_(ag_clone(init), true), *b = ag_requires_grad_(ag_zeros(AG_SCALAR_SHAPE, AG_F32), true);
    double ste_loss = train(x, y, w, b, true, &grad_ste);
    double w_err = 0;
    for (int i = 0; i < 3; i++) w_err = fmax(w_err, fabs(round(ag_get(w, (int64_t[]){i}) * 4) / 4 - teacher_w[i]));
    printf("STE: loss %.6f after %d steps; quantized weights %.2f %.2f %.2f (teacher %.2f %.2f %.2f)\n", ste_loss, steps,
           round(ag_get(w, (int64_t[]){0}) * 4) / 4, round(ag_get(w, (int64_t[]){1}) * 4) / 4,
           round(ag_get(w, (int64_t[]){2}) * 4) / 4, teacher_w[0], teacher_w[1], teacher_w[2]);

    ag_tensor *w2 = ag_requires_grad_(ag_clone(init), true), *b2 = ag_requires_grad_(ag_zeros(AG_SCALAR_SHAPE, AG_F32), true);
    double round_loss = train(x, y, w2, b2, false, &grad_round);
    printf("built-in round: loss %.6f, the weights' first gradient %.3g: they never move\n", round_loss, grad_round);

    if (isnan(ste_loss) || isnan(round_loss)) {
        fprintf(stderr, "%s\n", ag_last_error());
        ag_scope_end();
        return 1;
    }
    printf("softplus_max_diff=%.3g softplus_gradcheck=%d inplace_grad_diff=%.3g inplace_gradgradcheck=%d ste_loss=%.6f "
           "ste_weight_error=%.4f ste_grad0=%.4f round_loss=%.6f round_grad0=%.4f\n",
           sp_diff, gc, ip_diff, ggc, ste_loss, w_err, grad_ste, round_loss, grad_round);
    ag_scope_end();
    return ag_live_tensors() == 0 ? 0 : 1;
}

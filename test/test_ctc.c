/*
 * The CTC loss (ag_ctc_loss, ops/ctc.c) beyond its PyTorch fixtures (test_losses):
 * the loss of small cases against a sum over every path enumerated, the
 * gradient of the logits through log_softmax against central differences,
 * targets no alignment fits (inf and NaN, or 0 and a zero gradient with
 * zero_infinity) also in the differentiable adjoint, empty inputs, a long
 * sequence in float32, the batch split over threads, version checks of a node
 * of four inputs, and every error by its message.
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

static ag_tensor *ivec(int n, const int64_t *v) { return ag_from_data(v, AG_SHAPE(n), AG_I64); }

/* -log Σ over the C^T paths of the first T steps of sample n that collapse (repeats merged,
 * blanks dropped) to target, of Π_t p[t, path_t]: the definition, by enumeration. */
static double brute_force(const double *lp, int64_t N, int64_t C, int64_t n, int64_t T, const int64_t *target,
                          int64_t S, int64_t blank) {
    int64_t paths = 1;
    for (int64_t t = 0; t < T; t++) paths *= C;
    double total = 0;
    for (int64_t code = 0; code < paths; code++) {
        int64_t path[16], out[16], m = 0, c = code;
        for (int64_t t = 0; t < T; t++, c /= C) path[t] = c % C;
        for (int64_t t = 0; t < T; t++)
            if (path[t] != blank && (t == 0 || path[t] != path[t - 1])) out[m++] = path[t];
        if (m != S || memcmp(out, target, sizeof(int64_t) * (size_t)S) != 0) continue;
        double lprob = 0;
        for (int64_t t = 0; t < T; t++) lprob += lp[(t * N + n) * C + path[t]];
        total += exp(lprob);
    }
    return -log(total);
}

static void test_brute_force(void) {
    ag_scope_begin();
    ag_manual_seed(3);
    const int64_t T = 6, N = 4, C = 4, S = 3;
    ag_tensor *lp = ag_log_softmax(ag_mul_scalar(ag_randn(AG_SHAPE(T, N, C), AG_F64), 2), 2);
    const int64_t tg[] = {1, 2, 1, 3, 3, 0, 2, 2, 2, 1, 0, 0}, il[] = {6, 5, 6, 3}, tl[] = {3, 2, 3, 1};
    for (int64_t blank = 0; blank < 2; blank++) {
        int64_t t2[12];
        for (int k = 0; k < 12; k++) t2[k] = blank == 1 && tg[k] == 1 ? 0 : tg[k]; /* blank 1: label 1 becomes 0 */
        ag_loss_opts o = ag_loss_defaults();
        o.reduction = AG_REDUCTION_NONE;
        o.blank = blank;
        ag_tensor *l = ag_ctc_loss(lp, ag_from_data(t2, AG_SHAPE(N, S), AG_I64), ivec(4, il), ivec(4, tl), &o);
        double worst = l ? 0 : INFINITY;
        for (int64_t n = 0; l && n < N; n++) {
            double want = brute_force(ag_data(lp), N, C, n, il[n], t2 + n * S, tl[n], blank);
            worst = fmax(worst, fabs(ag_get(l, (int64_t[]){n}) - want) / fmax(1, fabs(want)));
        }
        ok(worst < 1e-12, "blank %lld: the loss of each sample is -log Σ of its alignments' probabilities, "
           "enumerated (worst relative error %.2g)", (long long)blank, worst);
    }
    ag_scope_end();
}

/* the loss of logits x (through log_softmax), summed: for ag_gradcheck */
typedef struct ctc_args {
    ag_tensor *tg, *il, *tl;
    ag_loss_opts o;
} ctc_args;
static ag_tensor *loss_of_logits(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    const ctc_args *a = ctx;
    return ag_ctc_loss(ag_log_softmax(in[0], -1), a->tg, a->il, a->tl, &a->o);
}

static void test_logits_gradcheck(void) {
    ag_scope_begin();
    ag_manual_seed(5);
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(7, 3, 5), AG_F64), true);
    ctc_args a = {ivec(6, (int64_t[]){4, 4, 1, 2, 3, 2}), ivec(3, (int64_t[]){7, 5, 6}), ivec(3, (int64_t[]){2, 3, 1}),
                  ag_loss_defaults()};
    for (int r = 0; r < 3; r++) {
        a.o.reduction = (ag_reduction)r;
        ag_gradcheck_report rep;
        ag_gradcheck_opts go = {.eps = 1e-6, .atol = 1e-7, .rtol = 1e-5, .quiet = true};
        ag_status st = ag_gradcheck(loss_of_logits, &a, &x, 1, &go, &rep);
        ok(st == AG_OK, "reduction %d, concatenated targets: the logits' gradient through log_softmax is the loss's "
           "(%lld entries)%s%s", r, (long long)rep.checked, st ? ": " : "", st ? ag_last_error() : "");
        ag_gradcheck_opts gg = {.eps = 1e-6, .atol = 1e-5, .rtol = 1e-4, .quiet = true};
        st = ag_gradgradcheck(loss_of_logits, &a, &x, 1, &gg, &rep);
        ok(st == AG_OK, "reduction %d: gradgradcheck of the logits (%lld entries)%s%s", r, (long long)rep.checked,
           st ? ": " : "", st ? ag_last_error() : "");
    }
    ag_scope_end();
}

/* max |a - b| over elements, NaN matching NaN; INFINITY for a NaN against a number */
static double diff(const ag_tensor *a, const ag_tensor *b) {
    if (!a || !b || ag_numel(a) != ag_numel(b)) return INFINITY;
    double w = 0;
    for (int64_t k = 0; k < ag_numel(a); k++) {
        double x = ag_item(ag_select(ag_flatten((ag_tensor *)a, 0, -1), 0, k));
        double y = ag_item(ag_select(ag_flatten((ag_tensor *)b, 0, -1), 0, k));
        if (isnan(x) && isnan(y)) continue;
        double e = fabs(x - y);
        if (!(e <= w)) w = isnan(e) ? INFINITY : e;
    }
    return w;
}

/* Sample 0's target needs 5 steps and has 4, sample 1 an empty input and target, sample 2 an
 * empty input and a target, sample 3 is fine. */
static void test_impossible(void) {
    ag_scope_begin();
    ag_manual_seed(7);
    const int64_t T = 5, N = 4, C = 3;
    ag_tensor *lp = ag_requires_grad_(ag_log_softmax(ag_randn(AG_SHAPE(T, N, C), AG_F64), 2), false);
    ag_tensor *tg = ag_from_data((int64_t[]){1, 1, 1, 0, 0, 0, 2, 0, 0, 2, 1, 0}, AG_SHAPE(N, 3), AG_I64);
    ag_tensor *il = ivec(4, (int64_t[]){4, 0, 0, 5}), *tl = ivec(4, (int64_t[]){3, 0, 1, 2});
    for (int zinf = 0; zinf < 2; zinf++) {
        ag_tensor *x = ag_requires_grad_(ag_clone(lp), true);
        ag_loss_opts o = ag_loss_defaults();
        o.reduction = AG_REDUCTION_NONE;
        o.zero_infinity = zinf;
        ag_tensor *l = ag_ctc_loss(x, tg, il, tl, &o);
        double l0 = ag_get(l, (int64_t[]){0}), l1 = ag_get(l, (int64_t[]){1}), l2 = ag_get(l, (int64_t[]){2});
        ok(zinf ? l0 == 0 && l2 == 0 : isinf(l0) && l0 > 0 && isinf(l2), "zero_infinity %d: a target too long for its "
           "input gives %g, an empty input with a target %g", zinf, l0, l2);
        ok(l1 == 0 && isfinite(ag_get(l, (int64_t[]){3})), "an empty input with an empty target gives 0 (got %g)", l1);
        ag_tensor *g = NULL;
        ag_grad_opts go = {.create_graph = true};
        ag_status st = ag_autograd_grad(&l, 1, &x, 1, (ag_tensor *[]){ag_ones(AG_SHAPE(N), AG_F64)}, &go, &g);
        ag_tensor *g1 = NULL;
        st = st ? st : ag_autograd_grad(&l, 1, &x, 1, (ag_tensor *[]){ag_ones(AG_SHAPE(N), AG_F64)}, NULL, &g1);
        bool nan0 = true, zero0 = true, zero12 = true;
        for (int64_t t = 0; g1 && t < T; t++)
            for (int64_t c = 0; c < C; c++) {
                double v = ag_get(g1, (int64_t[]){t, 0, c});
                nan0 &= t < 4 ? isnan(v) : v == 0;
                zero0 &= v == 0;
                zero12 &= ag_get(g1, (int64_t[]){t, 1, c}) == 0 && ag_get(g1, (int64_t[]){t, 2, c}) == 0;
            }
        ok(st == AG_OK && (zinf ? zero0 : nan0) && zero12,
           "zero_infinity %d: the impossible sample's gradient is %s, the empty inputs' 0", zinf,
           zinf ? "0" : "NaN (0 beyond its input length), as PyTorch's");
        ok(st == AG_OK && diff(g, g1) < 1e-14, "zero_infinity %d: the differentiable adjoint gives backward's gradient "
           "(NaN where it is; worst difference %.2g)", zinf, diff(g, g1));
    }
    ag_scope_end();
}

/* A long sequence: log space keeps float32 finite where probabilities underflow. */
static void test_long(void) {
    ag_scope_begin();
    ag_manual_seed(11);
    const int64_t T = 400, C = 6, S = 60;
    ag_tensor *x = ag_randn(AG_SHAPE(T, 1, C), AG_F64);
    int64_t tg[60];
    for (int k = 0; k < S; k++) tg[k] = 1 + (k * 7) % (C - 1);
    ag_tensor *t = ag_from_data(tg, AG_SHAPE(1, S), AG_I64), *il = ivec(1, (int64_t[]){T}), *tl = ivec(1, (int64_t[]){S});
    ag_loss_opts o = ag_loss_defaults();
    o.reduction = AG_REDUCTION_SUM;
    double l64 = ag_item(ag_ctc_loss(ag_log_softmax(x, 2), t, il, tl, &o));
    ag_tensor *x32 = ag_requires_grad_(ag_to_dtype(x, AG_F32), true);
    ag_tensor *l32 = ag_ctc_loss(ag_log_softmax(x32, 2), t, il, tl, &o);
    ag_backward(l32);
    ok(isfinite(l64) && l64 > 400 && fabs(ag_item(l32) - l64) / l64 < 1e-5 &&
           ag_item(ag_sum(ag_to_dtype(ag_isfinite(ag_grad(x32)), AG_F64))) == (double)(T * C),
       "T = 400, S = 60: float32 loss %.6g against float64 %.6g (p = e^-%.0f), finite gradient", ag_item(l32), l64, l64);
    ag_scope_end();
}

/* The samples split over threads give the single-thread results bit for bit. */
static void test_threads(void) {
    ag_scope_begin();
    ag_manual_seed(13);
    const int64_t T = 60, N = 64, C = 8, S = 10;
    ag_tensor *lp = ag_log_softmax(ag_randn(AG_SHAPE(T, N, C), AG_F32), 2);
    ag_tensor *tg = ag_empty(AG_SHAPE(N, S), AG_I64);
    ag_tensor *il = ag_empty(AG_SHAPE(N), AG_I64), *tl = ag_empty(AG_SHAPE(N), AG_I64);
    for (int64_t k = 0; k < N * S; k++) ((int64_t *)ag_data(tg))[k] = 1 + k % (C - 1);
    for (int64_t n = 0; n < N; n++) {
        ((int64_t *)ag_data(il))[n] = T - n % 7;
        ((int64_t *)ag_data(tl))[n] = n % (S + 1);
    }
    ag_tensor *l[2], *g[2];
    for (int k = 0; k < 2; k++) {
        ag_set_num_threads(k ? 2 : 1);
        ag_tensor *x = ag_requires_grad_(ag_clone(lp), true);
        l[k] = ag_ctc_loss(x, tg, il, tl, NULL);
        ag_backward(l[k]);
        g[k] = ag_grad(x);
    }
    ag_set_num_threads(0);
    ok(ag_item(l[0]) == ag_item(l[1]) && ag_item(ag_max(ag_abs(ag_sub(g[0], g[1])))) == 0,
       "64 samples on 1 and 2 threads: identical loss and gradient");
    ag_scope_end();
}

/* The node has four inputs (more than it holds inline): its version check reads their versions. */
static void test_versions(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(4, 1, 3), AG_F64), true);
    ag_tensor *tg = ivec(1, (int64_t[]){1}), *len1 = ivec(1, (int64_t[]){4}), *tl = ivec(1, (int64_t[]){1});
    ag_tensor *lp = ag_mul_scalar(ag_log_softmax(x, 2), 1.0); /* its node saves nothing of lp */
    ag_add_scalar_(lp, 0.0);                                  /* lp is at version 1 when recorded */
    ag_tensor *l = ag_ctc_loss(lp, tg, len1, tl, NULL);
    ok(ag_backward(l) == AG_OK, "an input changed in place before the loss: backward runs (%s)",
       ag_last_status() ? ag_last_error() : "ok");
    lp = ag_mul_scalar(ag_log_softmax(x, 2), 1.0);
    l = ag_ctc_loss(lp, tg, len1, tl, NULL);
    ag_add_scalar_(lp, 0.0);
    ok(ag_backward(l) == AG_ERR_GRAPH && strstr(ag_last_error(), "input 0 of CtcLossBackward0"),
       "changed after: %s", ag_last_error());
    ag_scope_end();
}

#define ERR(call, st, text)                                                                                 \
    do {                                                                                                    \
        ag_clear_error();                                                                                   \
        ag_tensor *r_ = (call);                                                                             \
        ok(r_ == NULL && ag_last_status() == (st) && strstr(ag_last_error(), text), "error: %s -> [%s] %s", \
           #call, ag_status_name(ag_last_status()), ag_last_error());                                       \
    } while (0)

static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *lp = ag_log_softmax(ag_randn(AG_SHAPE(5, 2, 4), AG_F64), 2);
    ag_tensor *tg = ag_from_data((int64_t[]){1, 2, 3, 3, 0, 0}, AG_SHAPE(2, 3), AG_I64);
    ag_tensor *il = ivec(2, (int64_t[]){5, 4}), *tl = ivec(2, (int64_t[]){3, 1});
    ok(ag_ctc_loss(lp, tg, il, tl, NULL) != NULL, "the valid call");
    ERR(ag_ctc_loss(lp, tg, ivec(2, (int64_t[]){6, 4}), tl, NULL), AG_ERR_VALUE,
        "ctc_loss: input_lengths[0] = 6 must be in [0, 5] (log_probs [5, 2, 4])");
    ERR(ag_ctc_loss(lp, tg, ivec(2, (int64_t[]){5, -1}), tl, NULL), AG_ERR_VALUE,
        "ctc_loss: input_lengths[1] = -1 must be in [0, 5]");
    ERR(ag_ctc_loss(lp, tg, il, ivec(2, (int64_t[]){3, 4}), NULL), AG_ERR_VALUE,
        "ctc_loss: target_lengths[1] = 4 must be in [0, 3] (targets [2, 3])");
    ERR(ag_ctc_loss(lp, ag_from_data((int64_t[]){1, 0, 3, 3, 0, 0}, AG_SHAPE(2, 3), AG_I64), il, tl, NULL),
        AG_ERR_INDEX, "ctc_loss: target 1 of sample 0 is 0: labels must be in [0, 4) and not the blank (0)");
    ERR(ag_ctc_loss(lp, ag_from_data((int64_t[]){1, 2, 3, 4, 0, 0}, AG_SHAPE(2, 3), AG_I64), il, tl, NULL),
        AG_ERR_INDEX, "ctc_loss: target 0 of sample 1 is 4: labels must be in [0, 4)");
    ERR(ag_ctc_loss(lp, tg, ivec(3, (int64_t[]){5, 4, 4}), tl, NULL), AG_ERR_SHAPE,
        "ctc_loss: input_lengths [3] and target_lengths [2] must hold one length per sample (2)");
    ERR(ag_ctc_loss(lp, tg, il, ivec(1, (int64_t[]){3}), NULL), AG_ERR_SHAPE,
        "ctc_loss: input_lengths [2] and target_lengths [1] must hold one length per sample (2)");
    ERR(ag_ctc_loss(lp, ag_zeros(AG_SHAPE(3, 3), AG_I64), il, tl, NULL), AG_ERR_SHAPE,
        "ctc_loss: targets [3, 3] must be [N, S] (padded) or 1-d (concatenated) for 2 samples");
    ERR(ag_ctc_loss(lp, ivec(3, (int64_t[]){1, 2, 3}), il, tl, NULL), AG_ERR_SHAPE,
        "ctc_loss: concatenated targets [3] must hold the sum of target_lengths, 4 labels");
    ERR(ag_ctc_loss(lp, ag_to_dtype(tg, AG_F64), il, tl, NULL), AG_ERR_DTYPE, "ctc_loss: targets must be int64, got float64");
    ERR(ag_ctc_loss(lp, tg, ag_to_dtype(il, AG_F32), tl, NULL), AG_ERR_DTYPE,
        "ctc_loss: input_lengths must be int64, got float32");
    ERR(ag_ctc_loss(ag_zeros(AG_SHAPE(5, 2, 4), AG_I64), tg, il, tl, NULL), AG_ERR_DTYPE,
        "ctc_loss: expected a float32 or float64 tensor, got int64");
    ERR(ag_ctc_loss(ag_ones(AG_SHAPE(5), AG_F64), tg, il, tl, NULL), AG_ERR_SHAPE, "ctc_loss: log_probs [5] must be [T, N, C]");
    ERR(ag_ctc_loss(ag_select(lp, 1, 0), tg, il, tl, NULL), AG_ERR_SHAPE,
        "ctc_loss: unbatched log_probs [5, 4] takes targets [S] and one input and target length, got targets [2, 3]");
    ag_loss_opts o = ag_loss_defaults();
    o.blank = 4;
    ERR(ag_ctc_loss(lp, tg, il, tl, &o), AG_ERR_INDEX, "ctc_loss: blank 4 is out of range for 4 classes");
    o = ag_loss_defaults();
    o.reduction = AG_REDUCTION_BATCHMEAN;
    ERR(ag_ctc_loss(lp, tg, il, tl, &o), AG_ERR_ARG, "ctc_loss: reduction batchmean is only valid for kl_div");
    ok(ag_ctc_loss(NULL, tg, il, tl, NULL) == NULL && ag_ctc_loss(lp, tg, il, NULL, NULL) == NULL, "NULL inputs give NULL");
    /* unbatched: 0-d or [1] lengths, [S] targets; none gives a 0-d loss */
    o = ag_loss_defaults();
    o.reduction = AG_REDUCTION_NONE;
    ag_tensor *u = ag_ctc_loss(ag_select(lp, 1, 0), ivec(3, (int64_t[]){1, 2, 3}), ag_scalar(5, AG_I64),
                               ag_scalar(3, AG_I64), &o);
    ag_tensor *b = ag_ctc_loss(lp, tg, il, tl, &o);
    ok(u && ag_ndim(u) == 0 && ag_item(u) == ag_get(b, (int64_t[]){0}), "unbatched: a 0-d loss, sample 0's of the batch");
    ag_scope_end();
}

int main(void) {
    test_brute_force();
    test_logits_gradcheck();
    test_impossible();
    test_long();
    test_threads();
    test_versions();
    test_errors();
    ok(ag_live_tensors() == 0, "no tensor leaked (%ld live)", ag_live_tensors());
    return tap_done();
}

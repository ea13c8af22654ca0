/*
 * ctc_toy.c - sequence labelling without alignments, with the CTC loss
 * (ag_ctc_loss, docs/nn-losses.md#ctc_loss).  Each sample is a noisy signal
 * that says 1 to 4 digits: every digit is held for 2 to 4 frames of its own
 * feature pattern, with 0 to 2 frames of silence between digits (at least one
 * between two equal digits), all under Gaussian noise.  The network (an LSTM,
 * then a linear layer to the 10 digits and the blank) is told only which digits
 * a signal says, never where: CTC sums over every alignment.  Decoding is
 * greedy: the most likely class per frame, repeats merged, blanks dropped.
 *
 *     ctc_toy [--steps N] [--batch B] [--hidden H] [--lr LR] [--noise S] [--seed S]
 *
 * Last line: seq_acc (the fraction of test signals decoded exactly),
 * label_err (edit distance over label count), loss_first (the mean of the first 20 steps),
 * loss_last (of the last 50), train_s, train_cpu_s.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "agrad/agrad.h"
#include "args.h"

#define DIGITS 10
#define C (DIGITS + 1) /* class 0 is the blank, digit d is class d + 1 */
#define FEATURES 8
#define MAX_LABELS 4
#define MAX_T (1 + MAX_LABELS * 4 + (MAX_LABELS - 1) * 2) /* leading silence, digits, gaps */

static int steps = 400, batch = 32, hidden = 48, seed = 1, test_n = 500;
static double lr = 1e-2, noise = 0.5;
static arg args[] = {{"steps", 'i', &steps, "training steps (a fresh batch each)"},
                     {"batch", 'i', &batch, "signals per batch"},
                     {"hidden", 'i', &hidden, "LSTM hidden units"},
                     {"lr", 'd', &lr, "Adam's learning rate"},
                     {"noise", 'd', &noise, "standard deviation of the noise on every feature"},
                     {"test", 'i', &test_n, "test signals"},
                     {"seed", 'i', &seed, "random seed"}};

static float pattern[DIGITS][FEATURES]; /* each digit's features, drawn once */

/* a uniform integer in [lo, hi] from the C library's generator (seeded by --seed) */
static int uniform(int lo, int hi) { return lo + rand() % (hi - lo + 1); }
static float gauss(void) {
    double u = (rand() + 1.0) / (RAND_MAX + 2.0), v = (rand() + 1.0) / (RAND_MAX + 2.0);
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

/* One batch of n signals: x [MAX_T, n, FEATURES] (zero-padded), targets [n, MAX_LABELS] (classes,
 * padded with 1), their lengths; labels[i] the digits (for decoding checks), owned by the scope. */
typedef struct batch_t {
    ag_tensor *x, *targets, *input_lengths, *target_lengths;
} batch_t;

static batch_t make_batch(int n) {
    batch_t b = {ag_zeros(AG_SHAPE(MAX_T, n, FEATURES), AG_F32), ag_ones(AG_SHAPE(n, MAX_LABELS), AG_I64),
                 ag_empty(AG_SHAPE(n), AG_I64), ag_empty(AG_SHAPE(n), AG_I64)};
    if (!b.x || !b.targets || !b.input_lengths || !b.target_lengths) return b;
    float *x = ag_data(b.x);
    int64_t *tg = ag_data(b.targets), *il = ag_data(b.input_lengths), *tl = ag_data(b.target_lengths);
    for (int i = 0; i < n; i++) {
        int k = uniform(1, MAX_LABELS), t = uniform(0, 1); /* leading silence */
        for (int j = 0; j < k; j++) {
            int d = uniform(0, DIGITS - 1);
            if (j > 0) t += uniform(tg[i * MAX_LABELS + j - 1] == d + 1 ? 1 : 0, 2); /* silence */
            for (int r = uniform(2, 4); r > 0; r--, t++)
                for (int f = 0; f < FEATURES; f++) x[(t * n + i) * FEATURES + f] = pattern[d][f];
            tg[i * MAX_LABELS + j] = d + 1;
        }
        il[i] = t;
        tl[i] = k;
    }
    for (int64_t e = 0; e < (int64_t)MAX_T * n * FEATURES; e++) x[e] += (float)noise * gauss();
    return b;
}

/* log-probabilities [MAX_T, n, C] */
static ag_tensor *forward(ag_module *lstm, ag_module *head, ag_tensor *x) {
    return ag_log_softmax(ag_module_forward(head, ag_module_forward(lstm, x)), 2);
}

static int min3(int a, int b, int c) { return a < b ? (a < c ? a : c) : (b < c ? b : c); }

/* Levenshtein distance between a and b */
static int edit_distance(const int64_t *a, int na, const int64_t *b, int nb) {
    int d[MAX_T + 1][MAX_LABELS + 1];
    for (int i = 0; i <= na; i++)
        for (int j = 0; j <= nb; j++)
            d[i][j] = i == 0 ? j : j == 0 ? i : min3(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]));
    return d[na][nb];
}

/* Greedy decoding of a test set: exact sequences and the label error rate. */
static void evaluate(ag_module *lstm, ag_module *head, int n, double *seq_acc, double *label_err) {
    ag_scope_begin();
    ag_no_grad_begin();
    batch_t b = make_batch(n);
    ag_tensor *best = ag_argmax(forward(lstm, head, b.x), 2, false); /* [MAX_T, n] */
    const int64_t *k = best ? ag_data(best) : NULL, *tg = ag_data(b.targets), *il = ag_data(b.input_lengths);
    const int64_t *tl = ag_data(b.target_lengths);
    int exact = 0, errors = 0, labels = 0;
    for (int i = 0; k && i < n; i++) {
        int64_t out[MAX_T];
        int m = 0;
        for (int t = 0; t < il[i]; t++) {
            int64_t c = k[t * n + i];
            if (c != 0 && (t == 0 || c != k[(t - 1) * n + i])) out[m++] = c;
        }
        int e = edit_distance(out, m, tg + i * MAX_LABELS, (int)tl[i]);
        exact += e == 0;
        errors += e;
        labels += (int)tl[i];
    }
    *seq_acc = k ? (double)exact / n : NAN;
    *label_err = k ? (double)errors / labels : NAN;
    ag_no_grad_end();
    ag_scope_end();
}

int main(int argc, char **argv) {
    int rc = args_parse(argc, argv, "Reads digit sequences from noisy signals with an LSTM trained by the CTC loss, no alignment given.",
                        args, NARGS(args));
    if (rc >= 0) return rc;
    srand((unsigned)seed);
    ag_manual_seed((uint64_t)seed);
    for (int d = 0; d < DIGITS; d++)
        for (int f = 0; f < FEATURES; f++) pattern[d][f] = gauss();
    ag_module *lstm = ag_nn_lstm(FEATURES, hidden, 1, true, false, 0, false), *head = ag_nn_linear(hidden, C, true);
    ag_tensor *params[8];
    int np = lstm && head ? ag_module_parameters(lstm, params, 8) : 0;
    np += np ? ag_module_parameters(head, params + np, 8 - np) : 0;
    ag_adam_options ao = ag_adam_defaults();
    ao.lr = lr;
    ag_optimizer *opt = np ? ag_adam_new(params, np, &ao) : NULL;
    ag_status st = opt ? AG_OK : ag_last_status();
    double first = 0, loss_last = NAN, window = 0, t0 = ag_seconds();
    clock_t c0 = clock();
    int in_window = 0;
    for (int s = 1; !st && s <= steps; s++) {
        ag_scope_begin();
        batch_t b = make_batch(batch);
        ag_optimizer_zero_grad(opt);
        ag_tensor *loss = ag_ctc_loss(forward(lstm, head, b.x), b.targets, b.input_lengths, b.target_lengths, NULL);
        st = loss ? ag_backward(loss) : ag_last_status();
        if (!st) st = ag_clip_grad_norm(params, np, 1.0, 2, false, NULL);
        if (!st) st = ag_optimizer_step(opt);
        if (!st) {
            const double l = ag_item(loss);
            if (s <= 20) first += l;
            window += l, in_window++;
            if (s % 50 == 0 || s == steps) {
                loss_last = window / in_window;
                printf("step %4d  loss %.4f\n", s, loss_last);
                window = 0, in_window = 0;
            }
        }
        ag_scope_end();
    }
    double train_s = ag_seconds() - t0, train_cpu_s = (double)(clock() - c0) / CLOCKS_PER_SEC, seq_acc = NAN, label_err = NAN, loss_first = first / (steps < 20 ? steps : 20);
    if (!st) evaluate(lstm, head, test_n, &seq_acc, &label_err);
    if (st) fprintf(stderr, "ctc_toy: %s\n", ag_last_error());
    else
        printf("seq_acc=%.4f label_err=%.4f loss_first=%.4f loss_last=%.4f train_s=%.2f train_cpu_s=%.2f\n", seq_acc,
               label_err, loss_first, loss_last, train_s, train_cpu_s);
    ag_optimizer_free(opt);
    ag_module_free(lstm);
    ag_module_free(head);
    return st ? 1 : ag_live_tensors() == 0 ? 0 : 1;
}

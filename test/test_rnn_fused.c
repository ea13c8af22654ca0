/*
 * The fused float32 recurrent layers (nn/rnn_fused.c: oneDNN's vanilla_rnn, lstm
 * and lbr_gru primitives) against the reference path of composed ops, which
 * test_rnn checks against PyTorch in float64: outputs, final states and the
 * gradients of the input, the initial states and every parameter, for RNN (tanh,
 * relu), LSTM and GRU, 1 and 2 layers, one and two directions, batch_first both
 * ways, with and without biases; LSTM and GRU at input and hidden 64 (the weights'
 * conversions through oneDNN's reorder) on two threads.  Then second derivatives
 * (create_graph), forward mode (the reference path's tangent), the cases that fall
 * back, the weight cache, and that a training step maps no fresh memory.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include "agrad/agrad.h"
#include "tap.h"
#include "test/fixture.h"
#include "test/on_valgrind.h"

enum { TANH, RELU, LSTM, GRU };
static const char *const names[4] = {"RNN(tanh)", "RNN(relu)", "LSTM", "GRU"};

static ag_module *make(int mode, int64_t in, int64_t hidden, int layers, bool bias, bool batch_first, bool bidir) {
    if (mode == TANH || mode == RELU)
        return ag_nn_rnn(in, hidden, layers, mode == RELU ? "relu" : "tanh", bias, batch_first, 0, bidir);
    return (mode == LSTM ? ag_nn_lstm : ag_nn_gru)(in, hidden, layers, bias, batch_first, 0, bidir);
}

/* Whether the graph of t holds a fused layer's node. */
static bool fused_in_graph(const ag_tensor *t) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ag_graph_print(f, t);
    fclose(f);
    bool found = buf && strstr(buf, "Fused");
    free(buf);
    return found;
}

/* The layer's results and gradients, with the fused path or the reference one. */
typedef struct run {
    ag_tensor *y, *hn, *cn, *g[24];
    int n;
    bool fused;
} run;

/* loss = Σ y·ry + Σ h_n·rh (+ Σ c_n·rc): every output gets a gradient of its own. */
static ag_status forward_backward(ag_module *m, int mode, ag_tensor *const *in, int nin, ag_tensor *const *r,
                                  bool create_graph, run *out) {
    bool lstm = mode == LSTM;
    ag_status st = ag_rnn_forward(m, in[0], in[1], lstm ? in[2] : NULL, NULL, &out->y, &out->hn, lstm ? &out->cn : NULL);
    if (st) return st;
    ag_tensor *loss = ag_add(ag_sum(ag_mul(out->y, r[0])), ag_sum(ag_mul(out->hn, r[1])));
    if (lstm) loss = ag_add(loss, ag_sum(ag_mul(out->cn, r[2])));
    out->fused = fused_in_graph(loss);
    out->n = nin;
    ag_grad_opts o = {.create_graph = create_graph};
    return ag_autograd_grad(&loss, 1, in, nin, NULL, &o, out->g);
}

static double compare(const run *a, const run *b) {
    double e = fmax(worst(a->y, b->y), worst(a->hn, b->hn));
    if (a->cn || b->cn) e = fmax(e, worst(a->cn, b->cn));
    for (int i = 0; i < a->n; i++) e = fmax(e, worst(a->g[i], b->g[i]));
    return e;
}

/* The inputs of a layer: x, h0, (c0), then its parameters (all requiring grad). */
static int inputs(ag_module *m, int mode, int64_t T, int64_t B, int64_t in_size, int64_t hidden, int layers,
                  bool batch_first, bool bidir, ag_tensor **in) {
    int n = 0, ld = layers * (bidir ? 2 : 1);
    in[n++] = ag_requires_grad_(ag_randn(batch_first ? AG_SHAPE(B, T, in_size) : AG_SHAPE(T, B, in_size), AG_F32), true);
    in[n++] = ag_requires_grad_(ag_randn(AG_SHAPE(ld, B, hidden), AG_F32), true);
    if (mode == LSTM) in[n++] = ag_requires_grad_(ag_randn(AG_SHAPE(ld, B, hidden), AG_F32), true);
    for (int i = 0; i < ag_module_num_parameter_tensors(m); i++) in[n++] = ag_module_parameter(m, i, NULL, 0);
    return n;
}

/* T steps, batch B, input I, hidden H, the cells from first to last (TANH .. GRU), 1 to
 * max_layers layers; sizes past 16 cross the weight transposes' blocks, gate blocks of
 * 64 x 64 and more go through oneDNN's reorder. */
static void test_against_reference(int64_t T, int64_t B, int64_t I, int64_t H, int first, int last, int max_layers) {
    int cases = 0, agree = 0, fused = 0;
    double worst_all = 0;
    for (int mode = first; mode <= last; mode++)
        for (int layers = 1; layers <= max_layers; layers++)
            for (int bidir = 0; bidir < 2; bidir++)
                for (int bf = 0; bf < 2; bf++)
                    for (int bias = 0; bias < 2; bias++) {
                        if (!bias && (bf || layers == 2)) continue; /* no bias: one layer, time first */
                        ag_scope_begin();
                        ag_manual_seed(100 + cases);
                        ag_module *m = make(mode, I, H, layers, bias, bf, bidir);
                        ag_tensor *in[24], *r[3];
                        int n = inputs(m, mode, T, B, I, H, layers, bf, bidir, in);
                        int64_t D = bidir ? 2 : 1;
                        r[0] = ag_randn(bf ? AG_SHAPE(B, T, D * H) : AG_SHAPE(T, B, D * H), AG_F32);
                        r[1] = ag_randn(AG_SHAPE(layers * D, B, H), AG_F32);
                        r[2] = ag_randn(AG_SHAPE(layers * D, B, H), AG_F32);
                        run a = {0}, b = {0};
                        ag_status st = forward_backward(m, mode, in, n, r, false, &a);
                        ag_set_onednn_enabled(false);
                        if (!st) st = forward_backward(m, mode, in, n, r, false, &b);
                        ag_set_onednn_enabled(true);
                        double e = st ? INFINITY : compare(&a, &b);
                        cases++;
                        fused += a.fused && !b.fused;
                        if (!a.fused || b.fused)
                            diag("%s layers=%d bidirectional=%d batch_first=%d bias=%d: fused with oneDNN on %d, off %d",
                                 names[mode], layers, bidir, bf, bias, a.fused, b.fused);
                        if (e <= 2e-5) agree++;
                        else
                            diag("%s layers=%d bidirectional=%d batch_first=%d bias=%d: worst relative error %.3g (%s)",
                                 names[mode], layers, bidir, bf, bias, e, st ? ag_last_error() : "values");
                        if (e > worst_all) worst_all = e;
                        ag_scope_end();
                        ag_module_free(m);
                    }
    ok(fused == cases, "[%lld, %lld, %lld] hidden %lld: %d of %d layers ran fused with oneDNN on, none with it off",
       (long long)T, (long long)B, (long long)I, (long long)H, fused, cases);
    ok(agree == cases,
       "[%lld, %lld, %lld] hidden %lld: fused = reference for %d of %d layers (outputs, h_n, c_n, gradients of x, h0, "
       "c0 and every parameter; worst relative error %.2g)",
       (long long)T, (long long)B, (long long)I, (long long)H, agree, cases, worst_all);
}

/* create_graph: the fused node's adjoint is a node of its own whose adjoint runs the
 * reference path twice, so second derivatives agree with the reference's; a third is
 * refused with a message. */
static void test_higher_order(void) {
    for (int mode = TANH; mode <= GRU; mode++) {
        if (mode == RELU) continue;
        ag_scope_begin();
        ag_manual_seed(7);
        ag_module *m = make(mode, 3, 4, 1, true, false, true);
        ag_tensor *in[24], *r[3];
        int n = inputs(m, mode, 4, 2, 3, 4, 1, false, true, in);
        r[0] = ag_randn(AG_SHAPE(4, 2, 8), AG_F32), r[1] = ag_randn(AG_SHAPE(2, 2, 4), AG_F32);
        r[2] = ag_randn(AG_SHAPE(2, 2, 4), AG_F32);
        ag_tensor *gg[2][24], *z[2] = {NULL, NULL};
        bool fused[2] = {false, false};
        run a[2] = {{0}};
        ag_status st = AG_OK;
        for (int ref = 0; ref < 2 && !st; ref++) {
            ag_set_onednn_enabled(!ref);
            st = forward_backward(m, mode, in, n, r, true, &a[ref]);
            fused[ref] = a[ref].fused;
            /* z = Σ (dL/dx)² + Σ (dL/dW_hh)²: its gradient needs the adjoint's own derivative */
            z[ref] = st ? NULL : ag_add(ag_sum(ag_mul(a[ref].g[0], a[ref].g[0])),
                                        ag_sum(ag_mul(a[ref].g[mode == LSTM ? 4 : 3], a[ref].g[mode == LSTM ? 4 : 3])));
            ag_grad_opts o = {.allow_unused = true, .retain_graph = true};
            if (!st) st = z[ref] ? ag_autograd_grad(&z[ref], 1, in, n, NULL, &o, gg[ref]) : ag_last_status();
        }
        ag_set_onednn_enabled(true);
        double e = st ? INFINITY : compare(&a[0], &a[1]);
        for (int i = 0; i < n && !st; i++)
            if (gg[0][i] || gg[1][i]) e = fmax(e, worst(gg[0][i], gg[1][i]));
        ok(!st && fused[0] && !fused[1] && e <= 1e-4,
           "%s: first and second derivatives through the fused layer (create_graph) = the reference's (worst "
           "relative error %.2g)%s%s",
           names[mode], e, st ? ": " : "", st ? ag_last_error() : "");
        /* a third derivative: the gradient of z, itself recorded, differentiated again */
        ag_tensor *g2[24];
        ag_grad_opts o2 = {.allow_unused = true, .create_graph = true};
        st = z[0] ? ag_autograd_grad(&z[0], 1, in, n, NULL, &o2, g2) : AG_ERR_ARG;
        const char *msg = ag_last_error();
        ok(st == AG_ERR_GRAPH && msg && strstr(msg, "not three times"), "%s: a third derivative is refused: %s",
           names[mode], msg ? msg : "(no message)");
        ag_scope_end();
        ag_module_free(m);
    }
}

typedef struct jvp_ctx {
    ag_module *m;
} jvp_ctx;

static ag_tensor *lstm_fn(ag_tensor *const *in, int n, void *p) {
    (void)n;
    jvp_ctx *c = p;
    ag_tensor *y = NULL, *hn = NULL, *cn = NULL;
    if (ag_rnn_forward(c->m, in[0], in[1], in[2], NULL, &y, &hn, &cn)) return NULL;
    return ag_cat((ag_tensor *[]){ag_flatten(y, 0, -1), ag_flatten(hn, 0, -1), ag_flatten(cn, 0, -1)}, 3, 0);
}

/* Forward mode: the fused node's tangent is the reference path's. */
static void test_forward_mode(void) {
    ag_scope_begin();
    ag_manual_seed(9);
    jvp_ctx c = {ag_nn_lstm(3, 4, 1, true, false, 0, false)};
    ag_tensor *in[3] = {ag_randn(AG_SHAPE(5, 2, 3), AG_F32), ag_randn(AG_SHAPE(1, 2, 4), AG_F32),
                        ag_randn(AG_SHAPE(1, 2, 4), AG_F32)};
    ag_tensor *t[3] = {ag_randn(AG_SHAPE(5, 2, 3), AG_F32), ag_randn(AG_SHAPE(1, 2, 4), AG_F32), NULL};
    ag_tensor *out[2], *jvp[2];
    ag_status st = ag_jvp(lstm_fn, &c, in, 3, t, &out[0], &jvp[0]);
    ag_set_onednn_enabled(false);
    if (!st) st = ag_jvp(lstm_fn, &c, in, 3, t, &out[1], &jvp[1]);
    ag_set_onednn_enabled(true);
    double e = st ? INFINITY : fmax(worst(out[0], out[1]), worst(jvp[0], jvp[1]));
    ok(e <= 1e-5, "forward mode through a fused LSTM = the reference's tangent (worst relative error %.2g)", e);
    ag_scope_end();
    ag_module_free(c.m);
}

/* What the primitives do not take runs the reference path: lengths, float64, an empty batch. */
static void test_fallbacks(void) {
    ag_scope_begin();
    ag_module *m = ag_nn_gru(3, 4, 1, true, false, 0, false);
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(4, 2, 3), AG_F32), true), *y = NULL, *hn = NULL;
    ok(ag_rnn_forward(m, x, NULL, NULL, (int64_t[]){4, 2}, &y, &hn, NULL) == AG_OK && !fused_in_graph(y),
       "lengths that differ from T: the reference path");
    ok(ag_rnn_forward(m, x, NULL, NULL, (int64_t[]){4, 4}, &y, &hn, NULL) == AG_OK && fused_in_graph(y),
       "lengths all T: fused");
    ag_tensor *e = ag_requires_grad_(ag_randn(AG_SHAPE(4, 0, 3), AG_F32), true);
    ok(ag_rnn_forward(m, e, NULL, NULL, NULL, &y, &hn, NULL) == AG_OK && ag_numel(y) == 0 && !fused_in_graph(y),
       "an empty batch: the reference path, empty outputs");
    ag_tensor *u = ag_requires_grad_(ag_randn(AG_SHAPE(4, 3), AG_F32), true);
    ok(ag_rnn_forward(m, u, NULL, NULL, NULL, &y, &hn, NULL) == AG_OK && fused_in_graph(y) && ag_ndim(y) == 2,
       "an unbatched sequence: fused");
    ag_scope_end(); /* the graphs above hold the parameters */
    ag_scope_begin();
    ok(ag_module_to_dtype(m, AG_F64) == AG_OK, "to float64");
    ag_tensor *x64 = ag_requires_grad_(ag_randn(AG_SHAPE(4, 2, 3), AG_F64), true);
    ok(ag_rnn_forward(m, x64, NULL, NULL, NULL, &y, &hn, NULL) == AG_OK && !fused_in_graph(y),
       "float64: the reference path");
    ag_scope_end();
    ag_module_free(m);
}

/* The converted weights a module keeps between forwards follow in-place changes of its
 * parameters (their versions), and a non-contiguous parameter is converted each time. */
static void test_weight_cache(void) {
    ag_scope_begin();
    ag_manual_seed(11);
    ag_module *m = ag_nn_gru(3, 4, 2, true, false, 0, true);
    ag_tensor *x = ag_randn(AG_SHAPE(5, 2, 3), AG_F32), *y1 = NULL, *y2 = NULL, *y3 = NULL, *ref = NULL;
    ag_no_grad_begin();
    ag_status st = ag_rnn_forward(m, x, NULL, NULL, NULL, &y1, NULL, NULL);
    if (!st) st = ag_rnn_forward(m, x, NULL, NULL, NULL, &y2, NULL, NULL);
    ag_add_scalar_(ag_module_get_parameter(m, "weight_hh_l1_reverse"), 0.25); /* in place: a new version */
    if (!st) st = ag_rnn_forward(m, x, NULL, NULL, NULL, &y3, NULL, NULL);
    ag_set_onednn_enabled(false);
    if (!st) st = ag_rnn_forward(m, x, NULL, NULL, NULL, &ref, NULL, NULL);
    ag_set_onednn_enabled(true);
    ag_no_grad_end();
    ok(!st && worst(y1, y2) == 0 && worst(y3, ref) <= 1e-5 && worst(y1, y3) > 1e-3,
       "a second forward reuses the converted weights (same output); after an in-place change of a weight the "
       "output follows it (fused = reference within %.2g)", st ? INFINITY : worst(y3, ref));
    ag_scope_end();
    ag_module_free(m);
}

/* Without AddressSanitizer (which turns the block caches off, core/cache.c). */
#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif
#ifndef ASAN
#define ASAN 0
#endif

/* The minor page faults of the process so far (-1: unknown). */
static long minor_faults(void) {
    struct rusage u;
    return getrusage(RUSAGE_SELF, &u) ? -1 : u.ru_minflt;
}

/* Training steps of an LSTM(256, 256) reuse their memory: the backward's buffer of converted
 * bias and weight gradients (2 MiB here) comes from the thread's block cache like the tensors,
 * so after two warm-up steps a step maps nothing: fewer than one minor page fault a step.  A
 * fresh block a step (as before: 4 MiB, allocated and freed by the backward) is at least two
 * faults a step (two 2 MiB huge pages), a thousand with 4 KiB pages. */
static void test_step_pages(void) {
    if (RUNNING_ON_VALGRIND || ASAN) {
        ok(1, "an LSTM step maps no fresh memory # SKIP under valgrind and ASan (no block cache)");
        return;
    }
    ag_manual_seed(12);
    ag_module *m = ag_nn_lstm(256, 256, 1, true, false, 0, false);
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(4, 8, 256), AG_F32), true);
    enum { WARM = 2, STEPS = 6 };
    bool fused = true, good = m && x;
    long before = 0;
    for (int i = 0; good && i < WARM + STEPS; i++) {
        if (i == WARM) before = minor_faults();
        ag_scope_begin();
        ag_module_zero_grad(m);
        ag_zero_grad(x);
        ag_tensor *loss = ag_sum(ag_module_forward(m, x));
        fused = fused && loss && fused_in_graph(loss);
        good = loss && ag_backward(loss) == AG_OK;
        ag_scope_end();
    }
    const long faults = good ? minor_faults() - before : -1;
    ok(good && fused && before >= 0 && faults >= 0 && faults < STEPS,
       "%d fused LSTM(256, 256) training steps after %d warm-up steps: %ld minor page faults (fewer than one a step)",
       STEPS, WARM, faults);
    ag_release(x);
    ag_module_free(m);
}

/* One module served from several threads at once (no-grad forwards, fixed weights): the
 * first forwards all miss the module's weight cache together, so blocks are replaced while
 * other threads' primitives read them in place (reference counted, nn/rnn_fused.c); every
 * output is the single-threaded one, bit for bit. */
enum { SERVERS = 4, SERVED = 3 };

typedef struct server {
    ag_module *m;
    ag_tensor *x;
    const float *want;
    int64_t n;
    pthread_barrier_t *start;
    int same;
} server;

static void *serve(void *p) {
    server *s = p;
    pthread_barrier_wait(s->start);
    for (int r = 0; r < SERVED; r++) {
        ag_scope_begin();
        ag_no_grad_begin();
        ag_tensor *y = NULL;
        if (ag_rnn_forward(s->m, s->x, NULL, NULL, NULL, &y, NULL, NULL) == AG_OK && ag_numel(y) == s->n &&
            memcmp(ag_data(y), s->want, (size_t)s->n * sizeof *s->want) == 0)
            s->same++;
        ag_no_grad_end();
        ag_scope_end();
    }
    return NULL;
}

static void test_served(void) {
    if (RUNNING_ON_VALGRIND) { /* oneDNN's sgemm on other threads: see main */
        ok(1, "one LSTM served from several threads at once # SKIP under valgrind (the plain and ASan runs check it)");
        return;
    }
    ag_scope_begin();
    ag_manual_seed(13);
    ag_module *m = ag_nn_lstm(64, 64, 1, true, false, 0, false);
    ag_manual_seed(13);
    ag_module *fresh = ag_nn_lstm(64, 64, 1, true, false, 0, false); /* the same weights, its cache empty */
    ag_tensor *x = ag_randn(AG_SHAPE(4, 3, 64), AG_F32), *want = NULL;
    ag_no_grad_begin();
    ag_status st = ag_rnn_forward(m, x, NULL, NULL, NULL, &want, NULL, NULL);
    ag_no_grad_end();
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, SERVERS);
    server s[SERVERS];
    pthread_t t[SERVERS];
    for (int i = 0; i < SERVERS; i++) {
        s[i] = (server){fresh, x, st ? NULL : ag_data(want), st ? 0 : ag_numel(want), &start, 0};
        pthread_create(&t[i], NULL, serve, &s[i]);
    }
    int same = 0;
    for (int i = 0; i < SERVERS; i++) pthread_join(t[i], NULL), same += s[i].same;
    pthread_barrier_destroy(&start);
    ok(!st && same == SERVERS * SERVED, "one LSTM served from %d threads at once: %d of %d forwards = the "
       "single-threaded output, bit for bit", SERVERS, same, SERVERS * SERVED);
    ag_scope_end();
    ag_module_free(m);
    ag_module_free(fresh);
}

int main(void) {
    /* The fused path is what is under test: on even where AGRAD_ONEDNN=0 turned oneDNN off
     * (the CI's valgrind run), so every case compares it with the reference. */
    ag_set_onednn_enabled(true);
    test_against_reference(5, 3, 4, 6, TANH, GRU, 2);
    test_against_reference(3, 2, 20, 35, TANH, GRU, 2);
    /* Gate blocks of 64 x 64 and more: the weights' conversions go through oneDNN's reorder,
     * here on two threads.  Not under valgrind: there oneDNN runs its AVX2 sgemm, which moves
     * the stack pointer of an OpenMP worker thread onto a buffer and back, and memcheck takes
     * a move of under --max-stackframe (2 MB) for a new stack frame, marking everything
     * between (agrad's tensors among it) undefined: "uninitialised" gradients whose values
     * are right (clean with --max-stackframe=300000 or with one thread; docs/benchmarks.md,
     * session 8).  Under valgrind the case runs on one thread. */
    int threads = ag_get_num_threads();
    ag_set_num_threads(RUNNING_ON_VALGRIND ? 1 : 2);
    test_against_reference(2, 2, 64, 64, LSTM, GRU, 1);
    ag_set_num_threads(threads);
    test_higher_order();
    test_forward_mode();
    test_fallbacks();
    test_weight_cache();
    test_step_pages();
    test_served();
    return tap_done();
}

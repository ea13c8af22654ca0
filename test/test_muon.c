/*
 * Muon against its published algorithm: the authors' muon.py re-implemented
 * in float64 by scripts/gen_optim_fixtures.py (torch 1.13 has no Muon) gives
 * test/fixtures/muon.txt, one Newton–Schulz result and two 30-step runs on a
 * small two-layer model with a bias (so both the orthogonalised and the AdamW
 * paths run, on a tall and a wide matrix).  The orthogonalised update must
 * have its singular values near 1.
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "optim/internal.h"
#include "tap.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

#define NVALS 30 /* W 4x3, V 3x5, b 3 */

static double W0[12], V0[15], b0[3], X0[24], Y0[30], G[15], G_out[15];
typedef struct run {
    char name[64], opts[512];
    int steps;
    double traj[32][NVALS];
} run;
static run runs[4];
static int nruns;

static void read_values(char *s, double *out, int n) {
    for (int i = 0; i < n; i++) out[i] = strtod(s, &s);
}

static bool load(void) {
    FILE *f = fopen(FIXTURES "/muon.txt", "r");
    if (!f) return false;
    static char line[8192];
    run *r = NULL;
    int step = 0;
    while (fgets(line, sizeof line, f)) {
        char name[16];
        int rows, cols, used = 0;
        if (line[0] == '#') continue;
        if (sscanf(line, "problem %15s %d %d %n", name, &rows, &cols, &used) == 3) {
            double *dst = !strcmp(name, "W") ? W0 : !strcmp(name, "V") ? V0 : !strcmp(name, "b") ? b0
                        : !strcmp(name, "X") ? X0 : Y0;
            read_values(line + used, dst, rows * cols);
        } else if (sscanf(line, "ns %d %d %n", &rows, &cols, &used) == 2) {
            read_values(line + used, G, 15);
        } else if (strncmp(line, "ns_out ", 7) == 0) {
            read_values(line + 7, G_out, 15);
        } else if (strncmp(line, "case ", 5) == 0 && nruns < 4) {
            r = &runs[nruns++];
            sscanf(line, "case %63s muon %d", r->name, &r->steps);
            step = 0;
        } else if (r && strncmp(line, "group ", 6) == 0) {
            sscanf(line, "group %*s %n", &used);
            snprintf(r->opts, sizeof r->opts, "%.500s", line + used);
        } else if (r && strncmp(line, "end", 3) == 0) {
            r = NULL;
        } else if (r && step < 32) {
            read_values(line, r->traj[step++], NVALS);
        }
    }
    fclose(f);
    return nruns == 2;
}

/* Eigenvalues of the symmetric n×n matrix A (destroyed) by cyclic Jacobi rotations. */
static void jacobi_eigenvalues(double *A, int n, double *ev) {
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) off += A[i * n + j] * A[i * n + j];
        if (off < 1e-30) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = A[p * n + q];
                if (fabs(apq) < 1e-300) continue;
                double theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) { /* A ← Jᵀ A J */
                    double akp = A[k * n + p], akq = A[k * n + q];
                    A[k * n + p] = c * akp - s * akq;
                    A[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) {
                    double apk = A[p * n + k], aqk = A[q * n + k];
                    A[p * n + k] = c * apk - s * aqk;
                    A[q * n + k] = s * apk + c * aqk;
                }
            }
    }
    for (int i = 0; i < n; i++) ev[i] = A[i * n + i];
}

/* Smallest and largest singular value of O [rows×cols] (rows >= cols). */
static void singular_range(const double *O, int rows, int cols, double *lo, double *hi) {
    double *A = calloc((size_t)(cols * cols), sizeof(double)), *ev = calloc((size_t)cols, sizeof(double));
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++)
            for (int k = 0; k < rows; k++) A[i * cols + j] += O[k * cols + i] * O[k * cols + j];
    jacobi_eigenvalues(A, cols, ev);
    *lo = INFINITY, *hi = 0;
    for (int i = 0; i < cols; i++) *lo = fmin(*lo, sqrt(fmax(ev[i], 0))), *hi = fmax(*hi, sqrt(fmax(ev[i], 0)));
    free(A);
    free(ev);
}

static void test_newton_schulz(void) {
    double out[15], work[64];
    ok(ag__newton_schulz_work(5, 3) <= 64, "workspace for a 5x3 matrix fits");
    ag__newton_schulz(G, out, 5, 3, 5, work);
    double e = 0;
    for (int i = 0; i < 15; i++) e = fmax(e, fabs(out[i] - G_out[i]));
    ok(e < 1e-12, "Newton–Schulz of a 5x3 matrix matches the published iteration (max difference %.1e)", e);
    double lo, hi;
    singular_range(out, 5, 3, &lo, &hi);
    ok(lo > 0.5 && hi < 1.5, "its singular values lie in [%.3f, %.3f], near 1", lo, hi);

    /* Random Gaussian matrices, tall and wide: singular values within the authors' (0.5, 1.5).
     * (A square one has singular values near 0, relative to its norm, that 5 steps do not lift
     * that far, in the authors' version as here.) */
    int shapes[3][2] = {{64, 32}, {20, 50}, {100, 40}};
    ag_manual_seed(3);
    for (int k = 0; k < 3; k++) {
        int r = shapes[k][0], c = shapes[k][1];
        ag_tensor *g = ag_randn(AG_SHAPE(r, c), AG_F64);
        double *o = malloc(sizeof(double) * (size_t)(r * c));
        double *w = malloc(sizeof(double) * (size_t)ag__newton_schulz_work(r, c));
        ag__newton_schulz(ag_data(g), o, r, c, 5, w);
        if (r < c) { /* measure on the transpose: rows >= cols */
            double *t = malloc(sizeof(double) * (size_t)(r * c));
            for (int i = 0; i < r; i++)
                for (int j = 0; j < c; j++) t[j * r + i] = o[i * c + j];
            singular_range(t, c, r, &lo, &hi);
            free(t);
        } else {
            singular_range(o, r, c, &lo, &hi);
        }
        ok(lo > 0.5 && hi < 1.5, "%dx%d Gaussian matrix: orthogonalised singular values in [%.3f, %.3f]", r, c, lo, hi);
        free(o);
        free(w);
        ag_release(g);
    }
    /* The quintic map is tuned for slope, not convergence: more steps keep the values inside (0.5, 1.5). */
    ag__newton_schulz(G, out, 5, 3, 25, work);
    singular_range(out, 5, 3, &lo, &hi);
    ok(lo > 0.5 && hi < 1.5, "after 25 iterations singular values stay in [%.3f, %.3f]", lo, hi);
}

typedef struct net {
    ag_tensor *W, *V, *b, *X, *Y;
} net;

/* mean((tanh(X·W + b)·V − Y)²) */
static ag_status net_closure(void *ctx, double *loss) {
    net *m = ctx;
    ag_zero_grad(m->W);
    ag_zero_grad(m->V);
    ag_zero_grad(m->b);
    ag_scope_begin();
    ag_tensor *l = ag_mean(ag_square(ag_sub(ag_matmul(ag_tanh(ag_add(ag_matmul(m->X, m->W), m->b)), m->V), m->Y)));
    ag_status st = l ? ag_backward(l) : ag_last_status();
    if (!st) *loss = ag_item(l);
    ag_scope_end();
    return st;
}

static double replay(const run *r, ag_dtype dt, int steps) {
    ag_muon_options o = ag_muon_defaults();
    char buf[512];
    snprintf(buf, sizeof buf, "%s", r->opts);
    for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n")) {
        char *eq = strchr(tok, '=');
        *eq = 0;
        const ag__optim_field *f = ag__optim_find_field(&ag__muon_algo, tok);
        if (!f || ag__optim_field_set("Muon", &o, f, strtod(eq + 1, NULL))) return INFINITY;
    }
    ag_scope_begin();
    net m = {
        ag_requires_grad_(ag_to_dtype(ag_from_data(W0, AG_SHAPE(4, 3), AG_F64), dt), true),
        ag_requires_grad_(ag_to_dtype(ag_from_data(V0, AG_SHAPE(3, 5), AG_F64), dt), true),
        ag_requires_grad_(ag_to_dtype(ag_from_data(b0, AG_SHAPE(3), AG_F64), dt), true),
        ag_to_dtype(ag_from_data(X0, AG_SHAPE(6, 4), AG_F64), dt),
        ag_to_dtype(ag_from_data(Y0, AG_SHAPE(6, 5), AG_F64), dt),
    };
    ag_optimizer *opt = ag_muon_new((ag_tensor *[]){m.W, m.V, m.b}, 3, &o);
    double worst = opt ? 0 : INFINITY;
    for (int s = 0; opt && s < steps; s++) {
        if (ag_optimizer_step_closure(opt, net_closure, &m, NULL)) {
            worst = INFINITY;
            break;
        }
        double v[NVALS];
        ag_copy_to(m.W, v, 12, AG_F64);
        ag_copy_to(m.V, v + 12, 15, AG_F64);
        ag_copy_to(m.b, v + 27, 3, AG_F64);
        for (int i = 0; i < NVALS; i++) worst = fmax(worst, fabs(v[i] - r->traj[s][i]) / fmax(fabs(r->traj[s][i]), 1e-3));
    }
    ag_optimizer_free(opt);
    ag_scope_end();
    return worst;
}

static void test_runs(void) {
    for (int i = 0; i < nruns; i++) {
        double e = replay(&runs[i], AG_F64, runs[i].steps);
        ok(e <= 1e-5, "%s: %d steps follow the published algorithm, max relative error %.2e", runs[i].name,
           runs[i].steps, e);
        double e32 = replay(&runs[i], AG_F32, 10);
        ok(e32 <= 1e-3, "%s in float32, first 10 steps: max relative error %.2e", runs[i].name, e32);
    }
}

static void test_update_shape(void) {
    /* One step from zero momentum with Nesterov: the update is NS(lerp(g, (1 − μ)g, μ)) scaled. */
    ag_scope_begin();
    ag_tensor *w = ag_requires_grad_(ag_zeros(AG_SHAPE(6, 2), AG_F64), true);
    ag_muon_options o = ag_muon_defaults();
    o.lr = 1;
    ag_optimizer *opt = ag_muon_new(&w, 1, &o);
    ag_tensor *g = ag_randn(AG_SHAPE(6, 2), AG_F64);
    ag_backward(ag_sum(ag_mul(w, g)));
    ag_optimizer_step(opt);
    double upd[12], lo, hi;
    ag_copy_to(w, upd, 12, AG_F64);
    for (int i = 0; i < 12; i++) upd[i] /= -sqrt(6.0 / 2.0);
    singular_range(upd, 6, 2, &lo, &hi);
    ok(lo > 0.5 && hi < 1.5, "a step moves a 6x2 weight by lr·√3 times a matrix with singular values in [%.3f, %.3f]",
       lo, hi);
    ag_optimizer_free(opt);
    ag_scope_end();
}

int main(void) {
    bool loaded = load();
    ok(loaded, "read the Newton–Schulz case and %d Muon runs from muon.txt", nruns);
    test_newton_schulz();
    test_runs();
    test_update_shape();
    ok(ag_live_tensors() == 0, "no tensor left alive");
    return tap_done();
}

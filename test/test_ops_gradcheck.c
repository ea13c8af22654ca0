/*
 * Every registered differentiable op passes gradcheck in float64 on each of
 * its test row's input shapes (which include broadcasting), once with
 * contiguous inputs and once with non-contiguous (transposed) views of the
 * same values; and its float32 forward agrees with the float64 one.  Every
 * registered op has exactly one test row in test/cases/ and every row names a
 * registered op; the rows whose index the benchmarks make before timing give
 * their call's values that way.
 */
#include <stdlib.h>
#include <string.h>
#include "test/cases/op_cases.h"
#include "agrad/agrad.h"
#include "core/internal.h"
#include "ops/registry.h"
#include "tap.h"

static void check_op(const ag_op *op, const ag_op_test *row) {
    for (int c = 0; c < 4 && row->cases[c].n > 0; c++) {
        const ag_op_case *cs = &row->cases[c];
        for (int nc = 0; nc < 2; nc++) {
            ag_scope_begin();
            ag_manual_seed(1234 + (uint64_t)c);
            ag_tensor *in[4], *in32[4];
            bool any_noncontig = false;
            for (int i = 0; i < cs->n; i++) {
                in[i] = opc_input(&cs->shape[i], row->domain, nc, AG_F64);
                ag_requires_grad_(in[i], true);
                any_noncontig |= !ag_is_contiguous(in[i]);
            }
            ag_manual_seed(1234 + (uint64_t)c);
            for (int i = 0; i < cs->n; i++) in32[i] = opc_input(&cs->shape[i], row->domain, nc, AG_F32);
            if (nc && !any_noncontig) { /* no input of 2+ dims: nothing new to check */
                ag_scope_end();
                continue;
            }
            char shapes[512] = "";
            for (int i = 0; i < cs->n; i++) {
                char s[AG_SHAPE_STR];
                strcat(shapes, ag__tshape(s, in[i]));
                if (i + 1 < cs->n) strcat(shapes, " ");
            }
            ag_gradcheck_opts o = {0, row->atol, row->rtol, false};
            ag_gradcheck_report rep;
            ag_status st = ag_gradcheck(row->call, (void *)row, in, cs->n, &o, &rep);
            ok(st == AG_OK, "gradcheck %s %s%s (%lld entries, worst error %.2g)%s%s", op->name, shapes,
               nc ? " non-contiguous" : "", (long long)rep.checked, rep.error, st ? ": " : "", st ? ag_last_error() : "");

            /* float32 forward agrees with float64 */
            ag_no_grad_begin();
            ag_tensor *y64 = ag_test_call(row, in, cs->n);
            ag_tensor *y32 = ag_test_call(row, in32, cs->n);
            ag_no_grad_end();
            double worst = y64 && y32 ? 0 : INFINITY;
            if (y64 && y32 && ag_numel(y64) == ag_numel(y32)) {
                int64_t n = ag_numel(y64);
                double *a = malloc(sizeof(double) * (size_t)(n + 1)), *b = malloc(sizeof(double) * (size_t)(n + 1));
                ag_copy_to(y64, a, n, AG_F64);
                ag_copy_to(y32, b, n, AG_F64);
                for (int64_t k = 0; k < n; k++) {
                    double e = fabs(a[k] - b[k]) / fmax(1, fabs(a[k]));
                    if (e > worst || isnan(e)) worst = isnan(e) ? INFINITY : e;
                }
                free(a);
                free(b);
            }
            ok(worst < 1e-4, "float32 forward of %s %s%s matches float64 (worst relative error %.2g)", op->name, shapes,
               nc ? " non-contiguous" : "", worst);
            ag_scope_end();
        }
    }
}

/* report's lines as TAP comments. */
static void diag_lines(const char *report) {
    while (*report) {
        size_t len = strcspn(report, "\n");
        diag("  %.*s", (int)len, report);
        report += len + (report[len] == '\n');
    }
}

/* The test table and the registry name the same ops, one row each; and the check that
 * says so catches a missing row, a row for no op and a second row for one op. */
static void check_table(void) {
    enum { MAX_ROWS = 1024 };
    static const ag_op_test *rows[MAX_ROWS + 1];
    static char report[8192];
    int n = 0;
    while (n < MAX_ROWS && (rows[n] = ag_test_case_at(n))) n++;
    const ag_op *op;
    int nops = 0;
    while (ag__op_at(nops)) nops++;
    ok(n > 0 && n < MAX_ROWS, "the test table has rows (%d, %d registered ops)", n, nops);

    int problems = ag_test_table_problems(rows, n, report, sizeof report);
    diag_lines(report);
    ok(problems == 0, "every registered op has exactly one test row in test/cases/, every row names a registered op "
                      "(%d problems)", problems);
    int matched = 0;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        const ag_op_test *row = ag_test_case_for(op);
        matched += row && strcmp(row->name, op->name) == 0 && row->call && row->cases[0].n > 0;
    }
    ok(matched == nops, "each registered op finds its row, with a call and a case (%d of %d)", matched, nops);

    /* The same check on broken tables. */
    const ag_op_test *first = rows[0];
    char want[128];
    snprintf(want, sizeof want, "no test row for op %s\n", first->name);
    problems = ag_test_table_problems(rows + 1, n - 1, report, sizeof report);
    ok(problems == 1 && strcmp(report, want) == 0, "a table without the row of %s has one problem, named", first->name);
    diag_lines(report);
    static const ag_op_test stray = {.name = "no_such_op"};
    rows[n] = &stray;
    problems = ag_test_table_problems(rows, n + 1, report, sizeof report);
    ok(problems == 1 && strcmp(report, "test row no_such_op names no registered op\n") == 0,
       "a row naming no registered op is one problem, named");
    diag_lines(report);
    rows[n] = first;
    snprintf(want, sizeof want, "two test rows for op %s\n", first->name);
    problems = ag_test_table_problems(rows, n + 1, report, sizeof report);
    ok(problems == 1 && strcmp(report, want) == 0, "a second row for %s is one problem, named", first->name);
    diag_lines(report);
    problems = ag_test_table_problems(rows, 0, report, 16);
    ok(problems == nops && strlen(report) == 15, "an empty table has a problem per op, reported up to the space given");
}

/* Scaling a case for benchmarks and the fuzzer: an empty input never grows, so a case whose
 * only input is empty cannot be scaled (it once looped forever); beside another it can.  Every
 * case of every row scales to a target size or says it cannot, in finite time. */
static void check_scaling(void) {
    const ag_op_case empty = {1, {AG_DIMS(0, 3)}}, with_row = {2, {AG_DIMS(0, 3), AG_DIMS(3)}};
    ag_op_case out;
    ok(!opc_scale(&empty, 100, &out), "a case of one empty input cannot be scaled up");
    ok(opc_scale(&with_row, 100, &out) && out.shape[1].dim[0] == 102 && out.shape[0].dim[0] == 0,
       "an empty input beside a [3]: the [3] grows to [102], the empty one stays empty");
    const ag_op_test *row;
    int cases = 0, scaled = 0, bad = 0;
    for (int i = 0; (row = ag_test_case_at(i)); i++)
        for (int c = 0; c < 4 && row->cases[c].n > 0; c++) {
            bool fits = opc_scale(&row->cases[c], 1000, &out);
            cases++;
            scaled += fits;
            if (fits ? opc_max_numel(&out) < 1000 : opc_max_numel(&row->cases[c]) > 1) bad++;
        }
    ok(bad == 0, "each of the %d test cases scales to 1000 elements (%d) or cannot grow (%d wrong)", cases, scaled, bad);
}

/* The indexing rows' indices: opc_index steps eight lanes at once (session 18); every value must
 * still be (a·k + b) mod m, for lengths around and below a lane block and steps of a and b that
 * exceed m or divide it. */
static void check_index_values(void) {
    static const int64_t abm[][3] = {{7, 2, 592}, {7, 2, 5}, {3, 0, 8}, {2, 1, 1}, {13, 40, 7}, {1, 0, 3}};
    int bad = 0, tried = 0;
    for (size_t p = 0; p < sizeof abm / sizeof abm[0]; p++)
        for (int64_t n = 0; n <= 70; n++) {
            ag_scope_begin();
            const int64_t a = abm[p][0], b = abm[p][1], m = abm[p][2];
            ag_tensor *t = opc_index(1, &n, a, b, m);
            const int64_t *v = t ? ag_data(t) : NULL;
            for (int64_t k = 0; t && k < n; k++) bad += v[k] != (a * k + b) % m;
            bad += !t;
            tried++;
            ag_scope_end();
        }
    ok(bad == 0, "opc_index gives (a·k + b) mod m at %d lengths and steps (%d values wrong)", tried, bad);
}

/* Values of t as float64 in a malloc'd array of ag_numel(t) (+1) entries; *n its length, -1 for
 * NULL t. */
static double *values_of(ag_tensor *t, int64_t *n) {
    *n = t ? ag_numel(t) : -1;
    double *v = malloc(sizeof(double) * (size_t)(*n + 2));
    if (t && v && ag_copy_to(t, v, *n, AG_F64) != AG_OK) *n = -2;
    return v;
}

/* Whether a and b hold the same values bit for bit (NaN == NaN of the same bits). */
static bool same_values(ag_tensor *a, ag_tensor *b) {
    int64_t na, nb;
    double *va = values_of(a, &na), *vb = values_of(b, &nb);
    bool same = va && vb && na >= 0 && na == nb && (na == 0 || memcmp(va, vb, sizeof(double) * (size_t)na) == 0);
    free(va);
    free(vb);
    return same;
}

/* The rows whose index or mask is made by their aux (the indexing ops): the benchmarks' call
 * (ag_test_call_aux with an index made once, before timing, and called twice on it) gives the
 * row's call's values bit for bit, on every case with contiguous and transposed inputs, and
 * leaves the index as it was; a row has its aux and call_aux both or neither. */
static void check_aux_rows(void) {
    int rows = 0, tried = 0, bad = 0, halves = 0;
    for (int i = 0; ag_test_case_at(i); i++) {
        const ag_op_test *row = ag_test_case_at(i);
        halves += !row->aux != !row->call_aux;
        if (!row->aux || !row->call_aux) continue;
        rows++;
        for (int c = 0; c < 4 && row->cases[c].n > 0; c++)
            for (int nc = 0; nc < 2; nc++) {
                const ag_op_case *cs = &row->cases[c];
                ag_scope_begin();
                ag_manual_seed(77 + (uint64_t)c);
                ag_tensor *in[4];
                for (int k = 0; k < cs->n; k++) in[k] = opc_input(&cs->shape[k], row->domain, nc, AG_F64);
                ag_tensor *y = ag_test_call(row, in, cs->n);
                ag_tensor *aux = row->aux(in, cs->n, row), *before = ag_clone(aux);
                ag_tensor *y1 = ag_test_call_aux(row, in, cs->n, aux), *y2 = ag_test_call_aux(row, in, cs->n, aux);
                bool fine = y && y1 && y2 && same_values(y, y1) && same_values(y, y2) && same_values(aux, before);
                if (!fine) diag("%s case %d%s: the benchmarks' call differs from the row's", row->name, c,
                                nc ? " non-contiguous" : "");
                bad += !fine;
                tried++;
                ag_clear_error();
                ag_scope_end();
            }
    }
    ok(rows >= 17 && bad == 0 && halves == 0,
       "the %d rows with an index made before the call give their call's values at %d cases (%d differ, %d rows "
       "with one of aux and call_aux)", rows, tried, bad, halves);
}

int main(void) {
    check_table();
    check_scaling();
    check_index_values();
    check_aux_rows();
    const ag_op *op;
    int checked = 0;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        const ag_op_test *row = ag_test_case_for(op);
        if (!op->backward || !row) continue;
        check_op(op, row);
        checked++;
    }
    diag("%d differentiable ops checked", checked);
    ok(checked > 0, "the registry lists differentiable ops");
    ok(ag_live_tensors() == 0, "no tensor outlives the checks (%ld live)", ag_live_tensors());
    return tap_done();
}

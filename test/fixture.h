/*
 * test/fixture.h - reading PyTorch fixtures (test/fixtures/) and comparing results with
 * them, shared by the tests that check agrad against PyTorch: the safetensors fixtures
 * (conv, embedding, nn_layers, rnn, transformer) and the text ones (read line by line, or
 * as "case ... end" blocks: activations, elementwise, linalg, losses, tensor_ops; "t key
 * ndim dims... values..." lines: autograd, higher_order), and the modules' print text
 * against PyTorch's.
 */
#ifndef AGRAD_TEST_FIXTURE_H
#define AGRAD_TEST_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

/* max |a - b| / max(1, |b|) over the elements; INFINITY when the shapes differ, either
 * is NULL, or an error is NaN. */
static inline double worst(const ag_tensor *a, const ag_tensor *b) {
    if (!a || !b || ag_numel(a) != ag_numel(b) || ag_ndim(a) != ag_ndim(b)) return INFINITY;
    for (int d = 0; d < ag_ndim(a); d++)
        if (ag_shape_of(a).dim[d] != ag_shape_of(b).dim[d]) return INFINITY;
    int64_t n = ag_numel(a);
    double *x = malloc(sizeof(double) * (size_t)(n + 1)), *y = malloc(sizeof(double) * (size_t)(n + 1)), w = 0;
    ag_copy_to(a, x, n, AG_F64);
    ag_copy_to(b, y, n, AG_F64);
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(x[i] - y[i]) / fmax(1, fabs(y[i]));
        if (!(e <= w)) w = isnan(e) ? INFINITY : e;
    }
    free(x);
    free(y);
    return w;
}

/* worst(got, want), also raising worst_seen[dt == AG_F64] (float32, float64) to it. */
static inline double fixture_error(double *worst_seen, const ag_tensor *got, const ag_tensor *want, ag_dtype dt) {
    double e = worst(got, want);
    if (e > worst_seen[dt == AG_F64]) worst_seen[dt == AG_F64] = e;
    return e;
}

/* The tensor "<key>.<name>" of the fixture file fx (borrowed); NULL if absent. */
static inline ag_tensor *fixture_get(const ag_state_dict *fx, const char *key, const char *name) {
    char k[320];
    snprintf(k, sizeof k, "%s.%s", key, name);
    return ag_state_dict_get(fx, k);
}

/* A leaf copy of the fixture tensor "<key>.<name>" that requires grad (owned by the open
 * scope), or NULL when absent. */
static inline ag_tensor *fixture_leaf(const ag_state_dict *fx, const char *key, const char *name) {
    ag_tensor *t = fixture_get(fx, key, name);
    return t ? ag_requires_grad_(ag_clone(t), true) : NULL;
}

/* Loads the fixture's parameters "<key>.p.<name>" (PyTorch's names) into m, strictly;
 * returns ag_module_load_state_dict's status. */
static inline ag_status fixture_load_params(const ag_state_dict *fx, ag_module *m, const char *key) {
    ag_state_dict *sd = ag_state_dict_new();
    char pre[160];
    int np = snprintf(pre, sizeof pre, "%s.p.", key);
    for (int i = 0; i < ag_state_dict_size(fx); i++)
        if (!strncmp(ag_state_dict_name(fx, i), pre, (size_t)np))
            ag_state_dict_set(sd, ag_state_dict_name(fx, i) + np, ag_state_dict_tensor(fx, i));
    ag_status st = ag_module_load_state_dict(m, sd, true);
    ag_state_dict_free(sd);
    return st;
}

/* Checks of many values against PyTorch that report one ok per case: the worst errors
 * seen (float32, float64), the failures counted so far, and the float32 tolerance (the
 * float64 one is 1e-12). */
typedef struct fixture_tally {
    double worst_seen[2];
    int failures;
    double tol_f32;
} fixture_tally;

/* Records the error of got against want in t; counts one failure above the tolerance
 * (diagnosed with key, dt and what). */
static inline void fixture_agree(fixture_tally *t, const char *key, const char *what, const ag_tensor *got,
                                 const ag_tensor *want, ag_dtype dt) {
    double e = fixture_error(t->worst_seen, got, want, dt);
    if (!(e <= (dt == AG_F64 ? 1e-12 : t->tol_f32))) {
        t->failures++;
        diag("%s %s: %s differs from PyTorch (worst relative error %.2g)", key, ag_dtype_name(dt), what, e);
    }
}

/* fixture_agree of every parameter's gradient in m with the fixture's "<k>.g.<name>"
 * (PyTorch's names); key names the case in diagnostics. */
static inline void fixture_agree_grads(fixture_tally *t, const ag_state_dict *fx, const char *key, const char *k,
                                       const ag_module *m, ag_dtype dt) {
    for (int i = 0; i < ag_module_num_parameter_tensors(m); i++) {
        char name[96], g[112];
        ag_tensor *p = ag_module_parameter(m, i, name, sizeof name);
        snprintf(g, sizeof g, "g.%s", name);
        fixture_agree(t, key, g, ag_grad(p), fixture_get(fx, k, g), dt);
    }
}

/* Case i of a module fixture (rnn, transformer): its key "case.<i>" (into key, size n) and its
 * nopts int64 options "case.<i>.opts" (into o); false after the last case. */
static inline bool fixture_case_opts(const ag_state_dict *fx, int i, char *key, size_t n, int64_t *o, int nopts) {
    snprintf(key, n, "case.%d", i);
    ag_tensor *opts = fixture_get(fx, key, "opts");
    return opts && ag_copy_to(opts, o, nopts, AG_I64) == AG_OK;
}

/* Opens a scope, writes the case's key in dt ("<key>.f64") into k (size n) and returns make(o)
 * in dt with the fixture's parameters "<k>.p.<name>" loaded (a failure to load counts in t);
 * the caller frees it and closes the scope.  NULL, diagnosed, scope closed, if it cannot be built. */
static inline ag_module *fixture_case_module(fixture_tally *t, const ag_state_dict *fx, const char *key, ag_dtype dt,
                                             ag_module *(*make)(const int64_t *), const int64_t *o, char *k, size_t n) {
    ag_scope_begin();
    snprintf(k, n, "%s.%s", key, dt == AG_F64 ? "f64" : "f32");
    ag_module *m = make(o);
    if (m && !(dt == AG_F64 && ag_module_to_dtype(m, AG_F64))) {
        if (fixture_load_params(fx, m, k)) t->failures++, diag("%s: load_state_dict: %s", k, ag_last_error());
        return m;
    }
    diag("%s: %s", key, ag_last_error());
    ag_module_free(m);
    ag_scope_end();
    return NULL;
}

/* ok that all n cases agreed with PyTorch, passed[1] of them in float64 (within 1e-12; what:
 * the results compared) and passed[0] in float32 (within t's tolerance); the worst errors. */
static inline void fixture_cases_agree(const fixture_tally *t, int n, const int passed[2], const char *what) {
    ok(passed[1] == n, "float64: %d of %d cases agree with PyTorch within 1e-12 (%s)", passed[1], n, what);
    ok(passed[0] == n, "float32: %d of %d cases agree with PyTorch within %g", passed[0], n, t->tol_f32);
    diag("worst relative error against PyTorch: float32 %.2g, float64 %.2g", t->worst_seen[0], t->worst_seen[1]);
}

/* Reads the text fixture at path line by line: each line that is not blank or a '#' comment
 * goes, its newline stripped, to take(line, ctx) (which may change it), until take returns
 * false.  Returns whether the file opened and take accepted every line. */
static inline bool fixture_read_lines(const char *path, bool (*take)(char *line, void *ctx), void *ctx) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char *line = NULL;
    size_t cap = 0;
    bool good = true;
    while (good && getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] != '#' && line[0] != '\0') good = take(line, ctx);
    }
    free(line);
    fclose(f);
    return good;
}

/* A fixture of cases, each a "case ..." line, the lines that fill it and "end": the cases
 * read so far (v, n of size bytes each, capacity cap; malloc'd, the caller frees v), whether
 * the last is still open, and the caller's take for each line. */
typedef struct fixture_cases {
    void *v;
    size_t size;
    int n, cap;
    bool open;
    bool (*take)(void *c, char *line, void *ctx);
    void *ctx;
} fixture_cases;

/* fixture_read_lines's take of fixture_read_cases: a "case" line appends a zeroed case and
 * opens it; every line then goes to the caller's take with the open case (NULL outside
 * one); "end" closes it. */
static inline bool fixture_case_line(char *line, void *ctx) {
    fixture_cases *fc = ctx;
    if (strncmp(line, "case ", 5) == 0) {
        if (fc->n == fc->cap) {
            void *grown = realloc(fc->v, fc->size * (size_t)(fc->cap ? 2 * fc->cap : 64));
            if (!grown) return false;
            fc->v = grown;
            fc->cap = fc->cap ? 2 * fc->cap : 64;
        }
        memset((char *)fc->v + fc->size * (size_t)fc->n++, 0, fc->size);
        fc->open = true;
    }
    bool good = fc->take(fc->open ? (char *)fc->v + fc->size * (size_t)(fc->n - 1) : NULL, line, fc->ctx);
    if (strcmp(line, "end") == 0) fc->open = false;
    return good;
}

/* Reads the fixture of cases at path (fixture_read_lines): each case of size bytes starts
 * zeroed at its "case" line, and take(c, line, ctx) fills it from that line and the ones up
 * to "end" (c NULL for a line outside a case).  Returns the malloc'd array of the *n cases
 * (the caller frees it); NULL with *n = 0 when the file does not open, take refuses a line
 * (what take allocated is then lost) or there is no case. */
static inline void *fixture_read_cases(const char *path, size_t size, bool (*take)(void *c, char *line, void *ctx),
                                       void *ctx, int *n) {
    fixture_cases fc = {NULL, size, 0, 0, false, take, ctx};
    bool good = fixture_read_lines(path, fixture_case_line, &fc) && fc.n > 0;
    if (!good) free(fc.v);
    *n = good ? fc.n : 0;
    return good ? fc.v : NULL;
}

/* The n numbers at the start of s, as a malloc'd array the caller frees (one element at
 * least, so n may be 0); NULL when s holds fewer. */
static inline double *fixture_parse_values(const char *s, int64_t n) {
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    char *end;
    for (int64_t k = 0; v && k < n; k++) {
        v[k] = strtod(s, &end);
        if (end == s) {
            free(v);
            return NULL;
        }
        s = end;
    }
    return v;
}

/* ndim sizes then their product of numbers from s: fills dim[0..ndim) and *n and returns
 * the numbers as fixture_parse_values does; NULL when s holds fewer. */
static inline double *fixture_parse_sized(const char *s, int ndim, int64_t *dim, int64_t *n) {
    char *end;
    *n = 1;
    for (int d = 0; d < ndim; d++) {
        dim[d] = strtoll(s, &end, 10);
        if (end == s) return NULL;
        s = end;
        *n *= dim[d];
    }
    return fixture_parse_values(s, *n);
}

/* A named tensor of a "case" fixture (linalg, losses): its shape and values (malloc'd);
 * dtype AG_I64 for int64 class indices, anything else for floats. */
typedef struct fixture_tensor {
    char name[32];
    ag_dtype dtype;
    int ndim;
    int64_t dim[AG_MAX_DIMS];
    int64_t n;
    double *v;
} fixture_tensor;

/* "ndim dims... values..." from s into t's shape and values; false when ndim is out of
 * range or s holds fewer numbers. */
static inline bool fixture_parse_shaped(const char *s, fixture_tensor *t) {
    char *end;
    long nd = strtol(s, &end, 10);
    if (end == s || nd < 0 || nd > AG_MAX_DIMS) return false;
    t->ndim = (int)nd;
    return (t->v = fixture_parse_sized(end, t->ndim, t->dim, &t->n)) != NULL;
}

/* t as a tensor of the open scope: int64 when t is, else its values in dtype (float). */
static inline ag_tensor *fixture_tensor_make(const fixture_tensor *t, ag_dtype dtype) {
    ag_shape s = {t->ndim, {0}};
    memcpy(s.dim, t->dim, sizeof(int64_t) * (size_t)t->ndim);
    if (t->dtype == AG_I64) {
        int64_t *buf = malloc(sizeof(int64_t) * (size_t)(t->n + 1));
        for (int64_t k = 0; k < t->n; k++) buf[k] = (int64_t)t->v[k];
        ag_tensor *r = ag_from_data(buf, s, AG_I64);
        free(buf);
        return r;
    }
    ag_tensor *r = ag_from_data(t->v, s, AG_F64);
    return dtype == AG_F64 ? r : ag_to_dtype(r, dtype);
}

/* The tensor of a text fixture record's rest "ndim dims... values..." (the strtok_r state
 * *save after the key): float64, kept out of every scope (ag_keep); a missing value reads
 * as NaN. */
static inline ag_tensor *fixture_parse_tensor(char **save) {
    ag_shape s = {0, {0}};
    s.ndim = atoi(strtok_r(NULL, " ", save));
    for (int d = 0; d < s.ndim && d < AG_MAX_DIMS; d++) s.dim[d] = atoll(strtok_r(NULL, " ", save));
    ag_tensor *t = ag_keep(ag_empty(s, AG_F64));
    double *v = ag_data(t);
    for (int64_t i = 0; i < ag_numel(t); i++) {
        char *tok = strtok_r(NULL, " ", save);
        v[i] = tok ? strtod(tok, NULL) : NAN;
    }
    return t;
}

/* max |t - want| for want a contiguous float64 fixture tensor; INFINITY when either is
 * missing, they differ in size, or a difference is NaN. */
static inline double fixture_max_diff(ag_tensor *t, const ag_tensor *want) {
    if (!t || !want || ag_numel(t) != ag_numel(want)) return INFINITY;
    ag_scope_begin();
    ag_tensor *c = ag_contiguous(ag_to_dtype(ag_detach(t), AG_F64));
    const double *p = ag_data(c), *q = ag_data(want);
    double m = 0;
    for (int64_t i = 0; i < ag_numel(c); i++) m = fmax(m, isnan(p[i] - q[i]) ? INFINITY : fabs(p[i] - q[i]));
    ag_scope_end();
    return m;
}

/* What ag_module_print writes for m (PyTorch's print(module) text), as a string the
 * caller frees. */
static inline char *fixture_module_repr(const ag_module *m) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ag_module_print(m, f);
    fclose(f);
    return buf;
}

/* ok() that m prints as want (PyTorch 1.13's repr of the same module, without the final
 * newline); frees m. */
static inline void fixture_prints(ag_module *m, const char *want) {
    char *got = m ? fixture_module_repr(m) : NULL;
    size_t n = got ? strlen(got) : 0;
    if (n && got[n - 1] == '\n') got[n - 1] = '\0';
    ok(got && strcmp(got, want) == 0, "prints as PyTorch: %s", got ? got : ag_last_error());
    free(got);
    ag_module_free(m);
}

#endif

/*
 * data/csv.c - numeric CSV files with an optional header and an optional label
 * column (integers kept, strings mapped to ids in order of first appearance).
 * The scanner walks the bytes once, record by record, tracking the line and
 * column of every cell for messages; quoted cells may hold the delimiter,
 * doubled quotes and line breaks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "data/internal.h"

struct ag_csv {
    ag_tensor *features, *labels;
    int64_t nclasses;
    char **class_names; /* string labels only */
    int64_t nnames;
    char **column_names; /* header names of the feature columns */
    int64_t ncolumns;
};

/* ---- growable arrays ---------------------------------------------------------------------- */
typedef struct vec {
    void *data;
    size_t len, cap, elem;
} vec;

static bool vec_reserve(vec *v, size_t more) {
    if (v->len + more <= v->cap) return true;
    size_t ncap = v->cap ? v->cap : 64;
    while (ncap < v->len + more) {
        if (ncap > SIZE_MAX / 2 / v->elem) return false;
        ncap *= 2;
    }
    void *nd = ag__alloc(ncap * v->elem);
    if (!nd) return false;
    if (v->len) memcpy(nd, v->data, v->len * v->elem);
    ag__free(v->data);
    v->data = nd;
    v->cap = ncap;
    return true;
}

static bool vec_push(vec *v, const void *x) {
    if (!vec_reserve(v, 1)) return false;
    memcpy((char *)v->data + v->len++ * v->elem, x, v->elem);
    return true;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = ag__alloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- the parse state ------------------------------------------------------------------------ */
typedef struct field {
    size_t off, len;  /* text in the scratch buffer, NUL-terminated */
    long long line;   /* where the cell starts */
} field;

typedef struct parser {
    const unsigned char *p, *end;
    const char *name;
    char delim;
    long long line;
    vec scratch; /* char: the current record's cells, unescaped */
    vec fields;  /* field */
    /* class-name table: open addressing over ids into names */
    vec names;   /* char * */
    int64_t *slots;
    size_t nslots;
} parser;

static bool is_space(const parser *ps, unsigned char c) { return (c == ' ' || c == '\t' || c == '\r') && c != ps->delim; }

static void *fail_at(const parser *ps, long long line, long long col, const char *what) {
    return ag__fail_null(AG_ERR_FORMAT, "load_csv: %s: line %lld, column %lld: %s", ps->name, line, col, what);
}

/* Skips blank lines (only spaces, tabs, CR); returns false at the end of the input. */
static bool skip_blank(parser *ps) {
    for (;;) {
        const unsigned char *q = ps->p;
        while (q < ps->end && is_space(ps, *q)) q++;
        if (q == ps->end) {
            ps->p = q;
            return false;
        }
        if (*q != '\n') return true;
        ps->p = q + 1;
        ps->line++;
    }
}

/* Reads one record into ps->fields.  Returns AG_OK or an error (recorded). */
static ag_status read_record(parser *ps) {
    ps->scratch.len = 0;
    ps->fields.len = 0;
    for (long long col = 1;; col++) {
        field f = {ps->scratch.len, 0, ps->line};
        while (ps->p < ps->end && is_space(ps, *ps->p) && *ps->p != '\r') ps->p++;
        if (ps->p < ps->end && *ps->p == '"') {
            ps->p++;
            for (;;) {
                if (ps->p == ps->end) return fail_at(ps, f.line, col, "unterminated quoted cell"), AG_ERR_FORMAT;
                unsigned char c = *ps->p++;
                if (c == '"') {
                    if (ps->p < ps->end && *ps->p == '"') ps->p++;
                    else break;
                } else if (c == '\n') {
                    ps->line++;
                } else if (c == '\0') {
                    return fail_at(ps, ps->line, col, "NUL byte (is this a binary file?)"), AG_ERR_FORMAT;
                }
                if (!vec_push(&ps->scratch, &c)) return AG_ERR_NOMEM;
            }
            while (ps->p < ps->end && is_space(ps, *ps->p)) ps->p++;
            if (ps->p < ps->end && *ps->p != (unsigned char)ps->delim && *ps->p != '\n')
                return fail_at(ps, ps->line, col, "unexpected character after a closing quote"), AG_ERR_FORMAT;
        } else {
            while (ps->p < ps->end && *ps->p != (unsigned char)ps->delim && *ps->p != '\n') {
                if (*ps->p == '\0') return fail_at(ps, ps->line, col, "NUL byte (is this a binary file?)"), AG_ERR_FORMAT;
                if (!vec_push(&ps->scratch, ps->p)) return AG_ERR_NOMEM;
                ps->p++;
            }
            char *s = ps->scratch.data;
            while (ps->scratch.len > f.off && is_space(ps, (unsigned char)s[ps->scratch.len - 1])) ps->scratch.len--;
        }
        f.len = ps->scratch.len - f.off;
        char nul = '\0';
        if (!vec_push(&ps->scratch, &nul) || !vec_push(&ps->fields, &f)) return AG_ERR_NOMEM;
        if (ps->p < ps->end && *ps->p == (unsigned char)ps->delim) {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end) { /* '\n' */
            ps->p++;
            ps->line++;
        }
        return AG_OK;
    }
}

static const char *cell(const parser *ps, size_t i, field *f) {
    *f = ((const field *)ps->fields.data)[i];
    return (const char *)ps->scratch.data + f->off;
}

static uint64_t hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* The id of class name s, adding it if new; -1 on ENOMEM. */
static int64_t class_id(parser *ps, const char *s) {
    if (ps->names.len * 2 >= ps->nslots) { /* keep the table at most half full */
        size_t n = ps->nslots ? ps->nslots * 2 : 64;
        int64_t *slots = ag__alloc(n * sizeof *slots);
        if (!slots) return -1;
        for (size_t i = 0; i < n; i++) slots[i] = -1;
        char **names = ps->names.data;
        for (size_t id = 0; id < ps->names.len; id++) {
            size_t h = (size_t)hash(names[id]) & (n - 1);
            while (slots[h] >= 0) h = (h + 1) & (n - 1);
            slots[h] = (int64_t)id;
        }
        ag__free(ps->slots);
        ps->slots = slots;
        ps->nslots = n;
    }
    char **names = ps->names.data;
    size_t h = (size_t)hash(s) & (ps->nslots - 1);
    while (ps->slots[h] >= 0) {
        if (strcmp(names[ps->slots[h]], s) == 0) return ps->slots[h];
        h = (h + 1) & (ps->nslots - 1);
    }
    char *copy = dup_str(s);
    if (!copy || !vec_push(&ps->names, &copy)) {
        ag__free(copy);
        return -1;
    }
    ps->slots[h] = (int64_t)ps->names.len - 1;
    return ps->slots[h];
}

static bool parse_double(const char *s, double *out) {
    char *e;
    errno = 0;
    *out = strtod(s, &e);
    return e != s && *e == '\0';
}

static bool parse_int(const char *s, int64_t *out) {
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    *out = v;
    return e != s && *e == '\0' && errno == 0;
}

void ag_csv_free(ag_csv *csv) {
    if (!csv) return;
    ag_release(csv->features);
    ag_release(csv->labels);
    for (int64_t i = 0; i < csv->nnames; i++) ag__free(csv->class_names[i]);
    ag__free(csv->class_names);
    for (int64_t i = 0; i < csv->ncolumns; i++) ag__free(csv->column_names[i]);
    ag__free(csv->column_names);
    ag__free(csv);
}

static void free_names(vec *v) {
    char **s = v->data;
    for (size_t i = 0; i < v->len; i++) ag__free(s[i]);
    ag__free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}

static ag_csv *parse_csv(parser *ps, const ag_csv_options *o) {
    vec values = {NULL, 0, 0, sizeof(double)}, ints = {NULL, 0, 0, sizeof(int64_t)},
        ids = {NULL, 0, 0, sizeof(int64_t)}, header = {NULL, 0, 0, sizeof(char *)};
    ag_csv *csv = NULL;
    bool all_int = true, ok = false, nomem = false;
    long long ncols = -1, first_line = 0, label = -1;
    int64_t nrows = 0;
    if (ps->end - ps->p >= 3 && memcmp(ps->p, "\xEF\xBB\xBF", 3) == 0) ps->p += 3; /* UTF-8 byte order mark */
    bool header_pending = o->header;
    while (skip_blank(ps)) {
        long long line = ps->line;
        ag_status st = read_record(ps);
        if (st) {
            nomem = st == AG_ERR_NOMEM;
            goto done;
        }
        long long nf = (long long)ps->fields.len;
        if (ncols < 0) {
            ncols = nf;
            first_line = line;
            label = -1;
            if (o->has_labels) {
                label = o->label_column < 0 ? ncols + o->label_column : o->label_column;
                if (label < 0 || label >= ncols) {
                    ag__fail_null(AG_ERR_ARG, "load_csv: %s: label column %d is out of range for %lld columns (line %lld)",
                                  ps->name, o->label_column, ncols, line);
                    goto done;
                }
            }
        } else if (nf != ncols) {
            ag__fail_null(AG_ERR_FORMAT, "load_csv: %s: line %lld: %lld columns, expected %lld (as on line %lld)", ps->name,
                          line, nf, ncols, first_line);
            goto done;
        }
        field f;
        if (header_pending) {
            header_pending = false;
            for (long long j = 0; j < nf; j++) {
                if (j == label) continue;
                char *name = dup_str(cell(ps, (size_t)j, &f));
                if (!name || !vec_push(&header, &name)) {
                    ag__free(name);
                    nomem = true;
                    goto done;
                }
            }
            continue;
        }
        if (!vec_reserve(&values, (size_t)nf)) {
            nomem = true;
            goto done;
        }
        for (long long j = 0; j < nf; j++) {
            const char *s = cell(ps, (size_t)j, &f);
            if (f.len == 0) {
                fail_at(ps, f.line, j + 1, "empty cell");
                goto done;
            }
            if (j == label) {
                int64_t v = 0, id;
                all_int = all_int && parse_int(s, &v);
                if ((id = class_id(ps, s)) < 0 || !vec_push(&ints, &v) || !vec_push(&ids, &id)) {
                    nomem = true;
                    goto done;
                }
                continue;
            }
            double v;
            if (!parse_double(s, &v)) {
                char what[96];
                snprintf(what, sizeof what, "\"%.40s%s\" is not a number", s, f.len > 40 ? "..." : "");
                fail_at(ps, f.line, j + 1, what);
                goto done;
            }
            ((double *)values.data)[values.len++] = v;
        }
        nrows++;
    }
    if (ncols < 0) {
        ag__fail_null(AG_ERR_FORMAT, "load_csv: %s: empty file (no rows)", ps->name);
        goto done;
    }
    csv = ag__calloc(sizeof *csv);
    if (!csv) {
        nomem = true;
        goto done;
    }
    int64_t d = ncols - (label >= 0);
    int64_t fshape[2] = {nrows, d}, lshape[1] = {nrows};
    csv->features = ag__new_unowned(o->dtype, 2, fshape, false);
    if (!csv->features) {
        nomem = true;
        goto done;
    }
    const double *v = values.data;
    if (o->dtype == AG_F32) {
        float *out = (float *)ag__ptr(csv->features);
        for (size_t i = 0; i < values.len; i++) out[i] = (float)v[i];
    } else if (values.len) {
        memcpy(ag__ptr(csv->features), v, values.len * sizeof(double));
    }
    if (label >= 0) {
        csv->labels = ag__new_unowned(AG_I64, 1, lshape, false);
        if (!csv->labels) {
            nomem = true;
            goto done;
        }
        int64_t *out = (int64_t *)ag__ptr(csv->labels);
        const int64_t *src = all_int ? ints.data : ids.data;
        if (nrows) memcpy(out, src, (size_t)nrows * sizeof(int64_t));
        if (all_int) {
            for (int64_t i = 0; i < nrows; i++)
                if (out[i] >= csv->nclasses) csv->nclasses = out[i] == INT64_MAX ? INT64_MAX : out[i] + 1;
        } else {
            csv->nclasses = csv->nnames = (int64_t)ps->names.len;
            csv->class_names = ps->names.data;
            ps->names.data = NULL;
            ps->names.len = ps->names.cap = 0;
        }
    }
    if (o->header) {
        csv->ncolumns = (int64_t)header.len;
        csv->column_names = header.data;
        header.data = NULL;
        header.len = 0;
    }
    ok = true;
done:
    if (nomem) ag__fail_null(AG_ERR_NOMEM, "load_csv: %s: out of memory", ps->name);
    if (!ok) {
        ag_csv_free(csv);
        csv = NULL;
    }
    ag__free(values.data);
    ag__free(ints.data);
    ag__free(ids.data);
    free_names(&header);
    return csv;
}

ag_csv *ag__csv_decode(const unsigned char *buf, size_t n, const char *name, const ag_csv_options *opt) {
    ag_csv_options o = opt ? *opt : (ag_csv_options){0};
    if (!o.delimiter) o.delimiter = ',';
    if (o.delimiter == '"' || o.delimiter == '\n' || o.delimiter == '\r' || o.delimiter == ' ')
        return ag__fail_null(AG_ERR_ARG, "load_csv: %s: the delimiter cannot be a quote, a space or a line break", name);
    if (o.dtype != AG_F32 && o.dtype != AG_F64)
        return ag__fail_null(AG_ERR_DTYPE, "load_csv: %s: features must be float32 or float64, not dtype %d", name,
                             (int)o.dtype);
    unsigned char *raw = NULL;
    if (ag__is_gzip(buf, n)) {
        if (ag__gunzip("load_csv", name, buf, n, &raw, &n)) return NULL;
        buf = raw;
    }
    parser ps = {.p = buf, .end = buf + n, .name = name, .delim = o.delimiter, .line = 1};
    ps.scratch.elem = 1;
    ps.fields.elem = sizeof(field);
    ps.names.elem = sizeof(char *);
    ag_csv *csv = parse_csv(&ps, &o);
    ag__free(ps.scratch.data);
    ag__free(ps.fields.data);
    free_names(&ps.names);
    ag__free(ps.slots);
    ag__free(raw);
    return csv;
}

ag_csv *ag_load_csv(const char *path, const ag_csv_options *opt) {
    unsigned char *buf;
    size_t n;
    if (ag__read_file("load_csv", path, &buf, &n)) return NULL;
    ag_csv *csv = ag__csv_decode(buf, n, path, opt);
    ag__free(buf);
    return csv;
}

ag_tensor *ag_csv_features(const ag_csv *csv) { return csv ? csv->features : NULL; }
ag_tensor *ag_csv_labels(const ag_csv *csv) { return csv ? csv->labels : NULL; }
int64_t ag_csv_num_classes(const ag_csv *csv) { return csv ? csv->nclasses : 0; }

const char *ag_csv_class_name(const ag_csv *csv, int64_t id) {
    return csv && id >= 0 && id < csv->nnames ? csv->class_names[id] : NULL;
}

const char *ag_csv_column_name(const ag_csv *csv, int64_t j) {
    return csv && j >= 0 && j < csv->ncolumns ? csv->column_names[j] : NULL;
}

/*
 * train/history.c - per-epoch curves: a table of named columns that grows one
 * row per epoch, written as CSV and kept in checkpoints.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "io/file.h"
#include "train/internal.h"

struct ag_history {
    int ncols;
    char **names;
    double *v;        /* rows × ncols, row-major */
    int64_t rows, cap;
};

void ag_history_free(ag_history *h) {
    if (!h) return;
    for (int i = 0; h->names && i < h->ncols; i++) ag__free(h->names[i]);
    ag__free(h->names);
    ag__free(h->v);
    ag__free(h);
}

ag_history *ag_history_new(int ncols, const char *const *names) {
    if (ncols < 1 || !names) return ag__fail_null(AG_ERR_ARG, "history_new: need at least one column name");
    for (int i = 0; i < ncols; i++) {
        if (!names[i] || !names[i][0] || strpbrk(names[i], ",\"\r\n"))
            return ag__fail_null(AG_ERR_ARG, "history_new: column %d needs a name without commas, quotes or line breaks", i);
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return ag__fail_null(AG_ERR_ARG, "history_new: column name \"%s\" is repeated", names[i]);
    }
    ag_history *h = ag__calloc(sizeof *h);
    if (h) h->names = ag__calloc((size_t)ncols * sizeof(char *));
    if (h && h->names) {
        h->ncols = ncols;
        for (int i = 0; i < ncols; i++) {
            size_t len = strlen(names[i]) + 1;
            if (!(h->names[i] = ag__alloc(len))) break;
            memcpy(h->names[i], names[i], len);
        }
        if (h->names[ncols - 1]) return h;
    }
    ag_history_free(h);
    return ag__fail_null(AG_ERR_NOMEM, "history_new: out of memory");
}

/* Room for at least rows rows. */
static ag_status reserve(ag_history *h, int64_t rows, const char *op) {
    if (rows <= h->cap) return AG_OK;
    int64_t cap = h->cap ? h->cap : 16, cells; /* rows is at most 2^62 (a tensor's size): no overflow doubling */
    while (cap < rows) cap *= 2;
    double *v = ag__mul_overflow(cap, h->ncols, &cells) ? NULL : ag__alloc_n(cells, sizeof(double));
    if (!v) return ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
    if (h->rows) memcpy(v, h->v, (size_t)h->rows * (size_t)h->ncols * sizeof(double));
    ag__free(h->v);
    h->v = v;
    h->cap = cap;
    return AG_OK;
}

ag_status ag_history_append(ag_history *h, const double *values) {
    if (!h || !values) return ag__fail(AG_ERR_ARG, "history_append: NULL argument");
    ag_status st = reserve(h, h->rows + 1, "history_append");
    if (st) return st;
    memcpy(h->v + h->rows * h->ncols, values, (size_t)h->ncols * sizeof(double));
    h->rows++;
    return AG_OK;
}

int64_t ag_history_len(const ag_history *h) { return h ? h->rows : 0; }
int ag_history_num_columns(const ag_history *h) { return h ? h->ncols : 0; }
const char *ag_history_column_name(const ag_history *h, int i) {
    return h && i >= 0 && i < h->ncols ? h->names[i] : NULL;
}

static int column(const ag_history *h, const char *name) {
    for (int i = 0; name && i < h->ncols; i++)
        if (strcmp(h->names[i], name) == 0) return i;
    return -1;
}

double ag_history_get(const ag_history *h, int64_t row, const char *name) {
    if (!h) return ag__fail(AG_ERR_ARG, "history_get: NULL argument"), NAN;
    int c = column(h, name);
    if (c < 0) return ag__fail(AG_ERR_ARG, "history_get: no column named \"%s\"", name ? name : "(null)"), NAN;
    if (row < 0) row += h->rows;
    if (row < 0 || row >= h->rows)
        return ag__fail(AG_ERR_INDEX, "history_get: row %lld is out of range for %lld rows", (long long)row,
                        (long long)h->rows), NAN;
    return h->v[row * h->ncols + c];
}

ag_status ag_history_save_csv(const ag_history *h, const char *path) {
    if (!h || !path) return ag__fail(AG_ERR_ARG, "history_save_csv: NULL argument");
    size_t cap = 64, len = 0;
    for (int c = 0; c < h->ncols; c++) cap += strlen(h->names[c]) + 1;
    cap += (size_t)h->rows * ((size_t)h->ncols + 1) * 32;
    char *buf = ag__alloc(cap);
    if (!buf) return ag__fail(AG_ERR_NOMEM, "history_save_csv: out of memory");
    len += (size_t)snprintf(buf + len, cap - len, "epoch");
    for (int c = 0; c < h->ncols; c++) len += (size_t)snprintf(buf + len, cap - len, ",%s", h->names[c]);
    len += (size_t)snprintf(buf + len, cap - len, "\n");
    for (int64_t r = 0; r < h->rows; r++) {
        len += (size_t)snprintf(buf + len, cap - len, "%lld", (long long)r + 1);
        for (int c = 0; c < h->ncols; c++) {
            double x = h->v[r * h->ncols + c];
            if (isnan(x)) len += (size_t)snprintf(buf + len, cap - len, ",nan");
            else len += (size_t)snprintf(buf + len, cap - len, ",%.9g", x);
        }
        len += (size_t)snprintf(buf + len, cap - len, "\n");
    }
    ag_status st = ag__write_file("history_save_csv", path, buf, len);
    ag__free(buf);
    return st;
}

/* "history.<column>" in a new buffer (ag__free it), or NULL with AG_ERR_NOMEM naming op. */
static char *entry_name(const ag_history *h, int c, const char *op) {
    char *name = ag__alloc(sizeof "history." + strlen(h->names[c]));
    if (!name) return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory", op);
    strcpy(name, "history.");
    return strcat(name, h->names[c]);
}

ag_status ag_history_state_dict(const ag_history *h, ag_state_dict *sd) {
    if (!h || !sd) return ag__fail(AG_ERR_ARG, "history_state_dict: NULL argument");
    ag_status st = AG_OK;
    for (int c = 0; !st && c < h->ncols; c++) {
        ag_tensor *t = ag__new_unowned(AG_F64, 1, (int64_t[]){h->rows}, false);
        char *name = t ? entry_name(h, c, "history_state_dict") : NULL;
        if (!name) {
            ag_release(t);
            return ag__fail(AG_ERR_NOMEM, "history_state_dict: out of memory");
        }
        for (int64_t r = 0; r < h->rows; r++) ((double *)ag__ptr(t))[r] = h->v[r * h->ncols + c];
        st = ag_state_dict_set(sd, name, t);
        ag__free(name);
        ag_release(t);
    }
    return st;
}

/* Checks the columns sd holds for h (1-D floats of one length; any values, NaN included:
 * an epoch may have had none), then (apply) puts them in place; changes nothing on failure. */
static ag_status history_load(ag_history *h, const ag_state_dict *sd, bool apply) {
    if (!h || !sd) return ag__fail(AG_ERR_ARG, "history_load_state_dict: NULL argument");
    char s[AG_SHAPE_STR];
    int64_t rows = -1;
    const ag_tensor **cols = ag__alloc(sizeof(ag_tensor *) * (size_t)h->ncols);
    ag_status st = cols ? AG_OK : ag__fail(AG_ERR_NOMEM, "history_load_state_dict: out of memory");
    for (int c = 0; !st && c < h->ncols; c++) { /* validate every column first */
        char *name = entry_name(h, c, "history_load_state_dict");
        const ag_tensor *t = name ? ag_state_dict_get(sd, name) : NULL;
        if (!name) st = AG_ERR_NOMEM;
        else if (!t) st = AG_ERR_ARG;
        else if (t->ndim != 1 || (t->dtype != AG_F64 && t->dtype != AG_F32) || (rows >= 0 && t->shape[0] != rows))
            st = ag__fail(AG_ERR_VALUE, "history_load_state_dict: %s is %s %s, expected float64 [%lld]", name,
                          ag_dtype_name(t->dtype), ag__tshape(s, t), (long long)(rows >= 0 ? rows : t->shape[0]));
        else rows = t->shape[0], cols[c] = t;
        ag__free(name);
    }
    if (!st && apply) st = reserve(h, rows, "history_load_state_dict");
    if (!st && apply) {
        for (int c = 0; c < h->ncols; c++)
            for (int64_t r = 0; r < rows; r++) h->v[r * h->ncols + c] = ag__read(cols[c], cols[c]->offset + r * cols[c]->stride[0]);
        h->rows = rows;
    }
    ag__free(cols);
    return st;
}

ag_status ag_history_load_state_dict(ag_history *h, const ag_state_dict *sd) { return history_load(h, sd, true); }
ag_status ag__history_check_state_dict(ag_history *h, const ag_state_dict *sd) { return history_load(h, sd, false); }

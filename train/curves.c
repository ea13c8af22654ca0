/*
 * train/curves.c - a history's curves drawn with agrad/plot.h: the loss columns
 * in one subplot, the others (accuracies, learning rates...) in a second.
 */
#include <string.h>
#include "core/internal.h"
#include "agrad/plot.h"
#include "agrad/train.h"

static bool is_loss(const char *name) { return strstr(name, "loss") != NULL; }

ag_status ag_history_plot(const ag_history *h, const char *path, const char *title) {
    if (!h || !path) return ag__fail(AG_ERR_ARG, "history_plot: NULL history or path");
    int64_t n = ag_history_len(h);
    int ncols = ag_history_num_columns(h), nloss = 0;
    for (int c = 0; c < ncols; c++) nloss += is_loss(ag_history_column_name(h, c));
    bool two = nloss > 0 && nloss < ncols;
    double *x = ag__alloc_n(n ? n : 1, 2 * sizeof(double));
    ag_plot *p = x ? ag_plot_new(title, "epoch", nloss ? "loss" : "") : NULL;
    ag_status st = p ? AG_OK : ag__fail(AG_ERR_NOMEM, "history_plot: out of memory");
    if (!st && two) st = ag_plot_size(p, 960, 400);
    for (int pass = 0; !st && pass < 1 + two; pass++) {
        if (two && !(st = ag_plot_subplot(p, 1, 2, pass)) && pass == 1) st = ag_plot_labels(p, "", "epoch", "");
        for (int c = 0; !st && c < ncols; c++) {
            const char *name = ag_history_column_name(h, c);
            if (two && is_loss(name) != (pass == 0)) continue;
            double *y = x + (n ? n : 1);
            for (int64_t r = 0; r < n; r++) x[r] = (double)(r + 1), y[r] = ag_history_get(h, r, name);
            st = ag_plot_line(p, x, y, n, name);
        }
    }
    if (!st) st = ag_plot_save_svg(p, path);
    ag_plot_free(p);
    ag__free(x);
    return st;
}

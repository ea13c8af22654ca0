/*
 * plot/plot.c - the figure model of agrad/plot.h: figures, subplots, series and
 * their checks.  Drawing is in plot/svg.c, marching squares in plot/contour.c.
 * Every call validates everything and allocates everything it needs before it
 * changes the figure, so a failed call leaves the figure as it was.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "plot/internal.h"

const char *const ag__palette[AG__PALETTE_SIZE] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

enum { MAX_GRID = 16, MAX_SIZE = 20000, MIN_SIZE = 100, MAX_RES = 1000, MAX_IMAGE = 4096 };

/* A copy of s in agrad's allocator; NULL for NULL or "" (the copy is *out; false on ENOMEM). */
static bool dup_str(const char *s, char **out) {
    *out = NULL;
    if (!s || !*s) return true;
    size_t n = strlen(s) + 1;
    *out = ag__alloc(n);
    if (!*out) return false;
    memcpy(*out, s, n);
    return true;
}

static void axes_clear(ag__axes *a) {
    ag__free(a->title);
    ag__free(a->xlabel);
    ag__free(a->ylabel);
    for (int i = 0; i < a->ns; i++) ag__series_clear(&a->s[i]);
    ag__free(a->s);
    memset(a, 0, sizeof *a);
}

/* A fresh subplot with the figure's default labels. */
static bool axes_init(const ag_plot *p, ag__axes *a) {
    memset(a, 0, sizeof *a);
    for (int k = 0; k < 4; k++) a->lim[k] = NAN;
    if (dup_str(p->xlabel, &a->xlabel) && dup_str(p->ylabel, &a->ylabel)) return true;
    axes_clear(a);
    return false;
}

void ag__series_clear(ag__series *s) {
    ag__free(s->label);
    ag__free(s->x);
    ag__free(s->y);
    ag__free(s->z);
    ag__free(s->levels);
    memset(s, 0, sizeof *s);
}

ag_plot *ag_plot_new(const char *title, const char *xlabel, const char *ylabel) {
    ag_plot *p = ag__calloc(sizeof *p);
    if (!p) return NULL;
    p->rows = p->cols = 1;
    if (!dup_str(title, &p->title) || !dup_str(xlabel, &p->xlabel) || !dup_str(ylabel, &p->ylabel) ||
        !(p->ax = ag__alloc(sizeof *p->ax)) || !axes_init(p, &p->ax[0])) {
        ag__free(p->ax);
        ag__free(p->title);
        ag__free(p->xlabel);
        ag__free(p->ylabel);
        ag__free(p);
        return NULL;
    }
    return p;
}

void ag_plot_free(ag_plot *p) {
    if (!p) return;
    for (int i = 0; i < p->rows * p->cols; i++) axes_clear(&p->ax[i]);
    ag__free(p->ax);
    ag__free(p->title);
    ag__free(p->xlabel);
    ag__free(p->ylabel);
    ag__free(p);
}

static ag_status null_plot(const char *op) { return ag__fail(AG_ERR_ARG, "%s: plot is NULL", op); }

ag_status ag_plot_size(ag_plot *p, int width, int height) {
    if (!p) return null_plot("plot_size");
    if (width < MIN_SIZE || width > MAX_SIZE || height < MIN_SIZE || height > MAX_SIZE)
        return ag__fail(AG_ERR_ARG, "plot_size: width and height must lie in [%d, %d], got %d x %d", MIN_SIZE,
                        MAX_SIZE, width, height);
    p->width = width;
    p->height = height;
    return AG_OK;
}

ag_status ag_plot_subplot(ag_plot *p, int rows, int cols, int index) {
    if (!p) return null_plot("plot_subplot");
    if (rows < 1 || cols < 1 || rows > MAX_GRID || cols > MAX_GRID)
        return ag__fail(AG_ERR_ARG, "plot_subplot: rows and cols must lie in [1, %d], got %d x %d", MAX_GRID, rows,
                        cols);
    if (index < 0 || index >= rows * cols)
        return ag__fail(AG_ERR_ARG, "plot_subplot: index %d is outside the %d x %d grid", index, rows, cols);
    bool fresh = p->rows * p->cols == 1;
    if (!fresh && (rows != p->rows || cols != p->cols))
        return ag__fail(AG_ERR_ARG, "plot_subplot: the figure is already a %d x %d grid, not %d x %d", p->rows,
                        p->cols, rows, cols);
    if (fresh && rows * cols > 1) {
        ag__axes *ax = ag__alloc(sizeof *ax * (size_t)(rows * cols));
        if (!ax) return AG_ERR_NOMEM;
        ax[0] = p->ax[0];
        for (int i = 1; i < rows * cols; i++)
            if (!axes_init(p, &ax[i])) {
                for (int k = 1; k < i; k++) axes_clear(&ax[k]);
                ag__free(ax);
                return AG_ERR_NOMEM;
            }
        ag__free(p->ax);
        p->ax = ax;
        p->rows = rows;
        p->cols = cols;
    }
    p->cur = index;
    return AG_OK;
}

ag_status ag_plot_labels(ag_plot *p, const char *title, const char *xlabel, const char *ylabel) {
    if (!p) return null_plot("plot_labels");
    ag__axes *a = &p->ax[p->cur];
    const char *in[3] = {title, xlabel, ylabel};
    char **field[3] = {&a->title, &a->xlabel, &a->ylabel};
    char *copy[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++)
        if (in[k] && !dup_str(in[k], &copy[k])) {
            for (int m = 0; m < k; m++) ag__free(copy[m]);
            return AG_ERR_NOMEM;
        }
    for (int k = 0; k < 3; k++)
        if (in[k]) {
            ag__free(*field[k]);
            *field[k] = copy[k];
        }
    return AG_OK;
}

/* AG_ERR_VALUE naming the first value a log axis cannot show: v[i] <= 0. */
static ag_status check_positive(const char *op, const char *axis, const double *v, int64_t n, int series) {
    for (int64_t i = 0; i < n; i++)
        if (isfinite(v[i]) && v[i] <= 0)
            return ag__fail(AG_ERR_VALUE, "%s: a log %s axis cannot show %s = %g (series %d, point %lld)", op, axis,
                            axis, v[i], series, (long long)i);
    return AG_OK;
}

/* The values of series s along axis d (0 x, 1 y) that must be positive on a log axis. */
static ag_status series_positive(const char *op, const ag__series *s, int d, int index) {
    const char *axis = d ? "y" : "x";
    switch (s->kind) {
    case AG__LINE:
    case AG__SCATTER:
    case AG__TRAJECTORY: return check_positive(op, axis, d ? s->y : s->x, s->n, index);
    case AG__HLINE: return d ? check_positive(op, axis, s->y, 1, index) : AG_OK;
    case AG__VLINE: return d ? AG_OK : check_positive(op, axis, s->x, 1, index);
    case AG__CONTOUR:
    case AG__IMAGE: return check_positive(op, axis, &s->box[2 * d], 2, index);
    }
    return AG_OK;
}

static ag_status check_limits_positive(const char *op, const ag__axes *a, int d) {
    for (int k = 2 * d; k < 2 * d + 2; k++)
        if (!isnan(a->lim[k]) && a->lim[k] <= 0)
            return ag__fail(AG_ERR_VALUE, "%s: a log %s axis needs positive limits, got %g", op, d ? "y" : "x",
                            a->lim[k]);
    return AG_OK;
}

ag_status ag_plot_log_scale(ag_plot *p, bool log_x, bool log_y) {
    if (!p) return null_plot("plot_log_scale");
    ag__axes *a = &p->ax[p->cur];
    bool want[2] = {log_x, log_y};
    for (int d = 0; d < 2; d++) {
        if (!want[d] || a->log[d]) continue;
        ag_status st = check_limits_positive("plot_log_scale", a, d);
        for (int i = 0; !st && i < a->ns; i++) st = series_positive("plot_log_scale", &a->s[i], d, i);
        if (st) return st;
    }
    a->log[0] = log_x;
    a->log[1] = log_y;
    return AG_OK;
}

ag_status ag_plot_limits(ag_plot *p, double x_lo, double x_hi, double y_lo, double y_hi) {
    if (!p) return null_plot("plot_limits");
    ag__axes *a = &p->ax[p->cur];
    double lim[4] = {x_lo, x_hi, y_lo, y_hi};
    for (int d = 0; d < 2; d++) {
        double lo = lim[2 * d], hi = lim[2 * d + 1];
        if (isinf(lo) || isinf(hi) || (!isnan(lo) && !isnan(hi) && lo >= hi))
            return ag__fail(AG_ERR_ARG, "plot_limits: %s limits must be finite with lo < hi, got %g and %g",
                            d ? "y" : "x", lo, hi);
    }
    ag__axes trial = *a;
    memcpy(trial.lim, lim, sizeof lim);
    for (int d = 0; d < 2; d++) {
        ag_status st = a->log[d] ? check_limits_positive("plot_limits", &trial, d) : AG_OK;
        if (st) return st;
    }
    memcpy(a->lim, lim, sizeof lim);
    return AG_OK;
}

ag_status ag_plot_legend(ag_plot *p, ag_plot_legend_loc loc) {
    if (!p) return null_plot("plot_legend");
    if ((int)loc < AG_LEGEND_AUTO || loc > AG_LEGEND_NONE)
        return ag__fail(AG_ERR_ARG, "plot_legend: unknown location %d", (int)loc);
    p->ax[p->cur].legend = loc;
    return AG_OK;
}

/* Appends s (whose arrays the axes takes over) to the current subplot after
 * checking it against log axes; on failure s is cleared. */
static ag_status push(ag_plot *p, const char *op, ag__series *s) {
    ag__axes *a = &p->ax[p->cur];
    ag_status st = AG_OK;
    for (int d = 0; d < 2 && !st; d++)
        if (a->log[d]) st = series_positive(op, s, d, a->ns);
    if (!st && a->ns == a->cap) {
        int cap = a->cap ? 2 * a->cap : 8;
        ag__series *ns = ag__alloc(sizeof *ns * (size_t)cap);
        if (!ns) {
            st = AG_ERR_NOMEM;
        } else {
            if (a->ns) memcpy(ns, a->s, sizeof *ns * (size_t)a->ns);
            ag__free(a->s);
            a->s = ns;
            a->cap = cap;
        }
    }
    if (st) {
        ag__series_clear(s);
        return st;
    }
    if (s->kind != AG__CONTOUR && s->kind != AG__IMAGE) s->color = a->ncolors++ % AG__PALETTE_SIZE;
    a->s[a->ns++] = *s;
    return AG_OK;
}

/* A copy of n doubles (x NULL: 0 .. n-1); false on ENOMEM. */
static bool copy_values(const double *v, int64_t n, double **out) {
    *out = ag__alloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!*out) return false;
    for (int64_t i = 0; i < n; i++) (*out)[i] = v ? v[i] : (double)i;
    return true;
}

static ag_status add_points(ag_plot *p, const char *op, ag__series_kind kind, const double *x, const double *y,
                            int64_t n, const char *label) {
    if (!p) return null_plot(op);
    if (n < 0) return ag__fail(AG_ERR_ARG, "%s: n must be non-negative, got %lld", op, (long long)n);
    if (n > 0 && !y) return ag__fail(AG_ERR_ARG, "%s: y is NULL", op);
    if ((uint64_t)n > SIZE_MAX / sizeof(double) / 2)
        return ag__fail(AG_ERR_ARG, "%s: %lld points are too many", op, (long long)n);
    ag__series s = {.kind = kind, .n = n};
    if (!copy_values(x, n, &s.x) || !copy_values(y, n, &s.y) || !dup_str(label, &s.label)) {
        ag__series_clear(&s);
        return AG_ERR_NOMEM;
    }
    return push(p, op, &s);
}

ag_status ag_plot_line(ag_plot *p, const double *x, const double *y, int64_t n, const char *label) {
    return add_points(p, "plot_line", AG__LINE, x, y, n, label);
}

ag_status ag_plot_scatter(ag_plot *p, const double *x, const double *y, int64_t n, const char *label) {
    return add_points(p, "plot_scatter", AG__SCATTER, x, y, n, label);
}

ag_status ag_plot_trajectory(ag_plot *p, const double *x, const double *y, int64_t n, const char *label) {
    return add_points(p, "plot_trajectory", AG__TRAJECTORY, x, y, n, label);
}

static ag_status add_reference(ag_plot *p, const char *op, ag__series_kind kind, double v, const char *label) {
    if (!p) return null_plot(op);
    if (!isfinite(v)) return ag__fail(AG_ERR_ARG, "%s: the value must be finite, got %g", op, v);
    double zero = 0;
    return add_points(p, op, kind, kind == AG__VLINE ? &v : &zero, kind == AG__HLINE ? &v : &zero, 1, label);
}

ag_status ag_plot_hline(ag_plot *p, double y, const char *label) {
    return add_reference(p, "plot_hline", AG__HLINE, y, label);
}

ag_status ag_plot_vline(ag_plot *p, double x, const char *label) {
    return add_reference(p, "plot_vline", AG__VLINE, x, label);
}

/* "#" and 3 or 6 hex digits, or 1 to 20 letters. */
static bool valid_color(const char *c) {
    size_t n = strlen(c);
    if (c[0] == '#') {
        if (n != 4 && n != 7) return false;
        for (size_t i = 1; i < n; i++)
            if (!strchr("0123456789abcdefABCDEF", c[i])) return false;
        return true;
    }
    if (n < 1 || n > 20) return false;
    for (size_t i = 0; i < n; i++)
        if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= 'A' && c[i] <= 'Z'))) return false;
    return true;
}

ag_status ag_plot_style_last(ag_plot *p, const ag_plot_style *style) {
    if (!p) return null_plot("plot_style_last");
    ag__axes *a = &p->ax[p->cur];
    if (!style) return ag__fail(AG_ERR_ARG, "plot_style_last: style is NULL");
    if (a->ns == 0 || a->s[a->ns - 1].kind == AG__CONTOUR || a->s[a->ns - 1].kind == AG__IMAGE)
        return ag__fail(AG_ERR_ARG, "plot_style_last: the current subplot has no line, scatter or trajectory to style");
    if (style->color && !valid_color(style->color))
        return ag__fail(AG_ERR_ARG, "plot_style_last: \"%.40s\" is not a colour (#rgb, #rrggbb or a name)", style->color);
    if (!(style->width >= 0 && style->width <= 100) || !(style->opacity >= 0 && style->opacity <= 1))
        return ag__fail(AG_ERR_ARG, "plot_style_last: width %g must lie in [0, 100] and opacity %g in [0, 1]",
                        style->width, style->opacity);
    ag__series *s = &a->s[a->ns - 1];
    if (style->color) snprintf(s->custom_color, sizeof s->custom_color, "%s", style->color);
    if (style->width > 0) s->width = style->width;
    if (style->opacity > 0) s->opacity = style->opacity;
    s->dashed |= style->dashed;
    s->markers |= style->markers;
    return AG_OK;
}

/* Checks a box [x_lo, x_hi] x [y_lo, y_hi]. */
static ag_status check_box(const char *op, const double *box) {
    if (!isfinite(box[0]) || !isfinite(box[1]) || !isfinite(box[2]) || !isfinite(box[3]) || box[0] >= box[1] ||
        box[2] >= box[3])
        return ag__fail(AG_ERR_ARG, "%s: the box [%g, %g] x [%g, %g] must be finite with lo < hi", op, box[0],
                        box[1], box[2], box[3]);
    return AG_OK;
}

/* Grid coordinate k of n along [lo, hi], evenly spaced, in log space if lg. */
static double grid_at(double lo, double hi, int k, int n, bool lg) {
    double t = (double)k / (n - 1);
    if (lg) return pow(10, log10(lo) + t * (log10(hi) - log10(lo)));
    return lo + t * (hi - lo);
}

ag_status ag_plot_contour(ag_plot *p, ag_plot_fn f, void *ctx, double x_lo, double x_hi, double y_lo, double y_hi,
                          const ag_plot_contour_options *o) {
    static const char *op = "plot_contour";
    if (!p) return null_plot(op);
    ag_plot_contour_options opt = o ? *o : (ag_plot_contour_options){0};
    if (!f) return ag__fail(AG_ERR_ARG, "plot_contour: f is NULL");
    double box[4] = {x_lo, x_hi, y_lo, y_hi};
    ag_status st = check_box(op, box);
    if (st) return st;
    int res = opt.resolution ? opt.resolution : 100;
    if (res < 2 || res > MAX_RES)
        return ag__fail(AG_ERR_ARG, "plot_contour: resolution must lie in [2, %d], got %d", MAX_RES, opt.resolution);
    if (opt.nlevels < 0 || (opt.levels && opt.nlevels == 0))
        return ag__fail(AG_ERR_ARG, "plot_contour: nlevels must be positive with levels, non-negative without, got %d",
                        opt.nlevels);
    for (int k = 0; opt.levels && k < opt.nlevels; k++)
        if (!isfinite(opt.levels[k]) || (k && !(opt.levels[k] > opt.levels[k - 1])))
            return ag__fail(AG_ERR_ARG, "plot_contour: levels must be finite and strictly increasing (level %d is %g)",
                            k, opt.levels[k]);
    const ag__axes *a = &p->ax[p->cur];
    ag__series s = {.kind = AG__CONTOUR, .res = res, .filled = opt.filled};
    memcpy(s.box, box, sizeof box);
    s.grid_log[0] = a->log[0];
    s.grid_log[1] = a->log[1];
    for (int d = 0; d < 2; d++)
        if (a->log[d] && (st = check_positive(op, d ? "y" : "x", &box[2 * d], 2, a->ns))) return st;
    int want = opt.levels ? opt.nlevels : opt.nlevels ? opt.nlevels : 10;
    s.z = ag__alloc(sizeof(double) * (size_t)res * (size_t)res);
    s.levels = ag__alloc(sizeof(double) * (size_t)(want + 1));
    if (!s.z || !s.levels) {
        ag__series_clear(&s);
        return AG_ERR_NOMEM;
    }
    double zmin = INFINITY, zmax = -INFINITY;
    for (int j = 0; j < res; j++) {
        double y = grid_at(y_lo, y_hi, j, res, s.grid_log[1]);
        for (int i = 0; i < res; i++) {
            double v = f(grid_at(x_lo, x_hi, i, res, s.grid_log[0]), y, ctx);
            s.z[(int64_t)j * res + i] = v;
            if (isfinite(v)) {
                zmin = fmin(zmin, v);
                zmax = fmax(zmax, v);
            }
        }
    }
    if (opt.levels) {
        memcpy(s.levels, opt.levels, sizeof(double) * (size_t)want);
        s.nlevels = want;
    } else if (zmin < zmax) {
        /* Nice values strictly inside the range. */
        double step;
        int n = ag__nice_ticks(zmin, zmax, want, s.levels, want + 1, &step);
        int m = 0;
        for (int k = 0; k < n; k++)
            if (s.levels[k] > zmin && s.levels[k] < zmax) s.levels[m++] = s.levels[k];
        s.nlevels = m;
    }
    return push(p, op, &s);
}

/* AG_ERR_VALUE when the current subplot has a log axis (an image needs linear ones). */
static ag_status linear_axes(const ag_plot *p, const char *op) {
    const ag__axes *a = &p->ax[p->cur];
    if (a->log[0] || a->log[1])
        return ag__fail(AG_ERR_VALUE, "%s: an image needs linear axes, the %s axis is logarithmic", op,
                        a->log[0] ? "x" : "y");
    return AG_OK;
}

ag_status ag_plot_image(ag_plot *p, const double *values, int rows, int cols, double lo, double hi) {
    if (!p) return null_plot("plot_image");
    if (!values) return ag__fail(AG_ERR_ARG, "plot_image: values is NULL");
    if (rows < 1 || cols < 1 || rows > MAX_IMAGE || cols > MAX_IMAGE)
        return ag__fail(AG_ERR_ARG, "plot_image: rows and cols must lie in [1, %d], got %d x %d", MAX_IMAGE, rows,
                        cols);
    if (!isfinite(lo) || !isfinite(hi) || lo >= hi)
        return ag__fail(AG_ERR_ARG, "plot_image: need finite lo < hi, got %g and %g", lo, hi);
    ag_status st = linear_axes(p, "plot_image");
    if (st) return st;
    ag__series s = {.kind = AG__IMAGE, .rows = rows, .cols = cols, .lo = lo, .hi = hi,
                    .box = {0, cols, 0, rows}};
    if (!copy_values(values, (int64_t)rows * cols, &s.z)) return AG_ERR_NOMEM;
    return push(p, "plot_image", &s);
}

/* The finite min and max of v[0 .. n-1] as *lo < *hi: a constant image gets ±0.5
 * around its value (mid-grey), one with no finite value [0, 1]. */
static void own_range(const double *v, int64_t n, double *lo, double *hi) {
    double a = INFINITY, b = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(v[i])) {
            a = fmin(a, v[i]);
            b = fmax(b, v[i]);
        }
    if (a > b) a = 0, b = 1;
    else if (a == b) a -= 0.5, b += 0.5;
    *lo = a;
    *hi = b;
}

ag_status ag_plot_image_grid(ag_plot *p, const double *values, int count, int rows, int cols, int grid_cols,
                             double lo, double hi) {
    const char *op = "plot_image_grid";
    if (!p) return null_plot(op);
    if (!values) return ag__fail(AG_ERR_ARG, "plot_image_grid: values is NULL");
    if (rows < 1 || cols < 1 || rows > MAX_IMAGE || cols > MAX_IMAGE)
        return ag__fail(AG_ERR_ARG, "plot_image_grid: rows and cols must lie in [1, %d], got %d x %d", MAX_IMAGE, rows,
                        cols);
    if (count < 1 || grid_cols < 1 || count > MAX_IMAGE || grid_cols > MAX_IMAGE)
        return ag__fail(AG_ERR_ARG, "plot_image_grid: count and grid_cols must lie in [1, %d], got %d and %d", MAX_IMAGE,
                        count, grid_cols);
    int64_t across = grid_cols < count ? grid_cols : count, down = (count + across - 1) / across;
    int64_t width = across * (cols + 1) - 1, height = down * (rows + 1) - 1; /* one pixel between images */
    if (width > MAX_IMAGE || height > MAX_IMAGE)
        return ag__fail(AG_ERR_ARG,
                        "plot_image_grid: %d images of %d x %d, %lld to a row, tile %lld x %lld pixels, more than %d a side",
                        count, rows, cols, (long long)across, (long long)height, (long long)width, MAX_IMAGE);
    bool own = isnan(lo) && isnan(hi);
    if (!own && (!isfinite(lo) || !isfinite(hi) || lo >= hi))
        return ag__fail(AG_ERR_ARG, "plot_image_grid: need lo and hi both NAN, or finite with lo < hi, got %g and %g", lo,
                        hi);
    ag_status st = linear_axes(p, op);
    if (st) return st;
    /* One image series per tile, each in its own box: the subplot's limits span them all. */
    ag__axes *a = &p->ax[p->cur];
    int before = a->ns;
    int64_t n = (int64_t)rows * cols;
    for (int k = 0; k < count && !st; k++) {
        const double *v = values + k * n;
        double x0 = (double)(k % across * (cols + 1)), y0 = (double)((down - 1 - k / across) * (rows + 1));
        ag__series s = {.kind = AG__IMAGE, .rows = rows, .cols = cols, .lo = lo, .hi = hi,
                        .box = {x0, x0 + cols, y0, y0 + rows}};
        if (own) own_range(v, n, &s.lo, &s.hi);
        st = copy_values(v, n, &s.z) ? push(p, op, &s) : AG_ERR_NOMEM;
    }
    if (st) /* the figure as it was */
        while (a->ns > before) ag__series_clear(&a->s[--a->ns]);
    return st;
}

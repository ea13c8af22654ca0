/*
 * plot/internal.h - the figure model that plot/plot.c builds and plot/svg.c
 * draws, the marching squares of plot/contour.c and the tick placement,
 * shared with test/test_plot.c.  Not installed.
 */
#ifndef AGRAD_PLOT_INTERNAL_H
#define AGRAD_PLOT_INTERNAL_H

#include "core/internal.h"
#include "agrad/plot.h"

typedef enum ag__series_kind {
    AG__LINE,
    AG__SCATTER,
    AG__TRAJECTORY,
    AG__HLINE,
    AG__VLINE,
    AG__CONTOUR,
    AG__IMAGE
} ag__series_kind;

/* One thing drawn in a subplot. */
typedef struct ag__series {
    ag__series_kind kind;
    char *label; /* NULL: not in the legend */
    int color;   /* index into the palette (lines, scatter, trajectories, reference lines) */
    char custom_color[24]; /* "" or the colour ag_plot_style_last set */
    double width, opacity; /* 0: the kind's default; opacity 0: 1 */
    bool dashed, markers;
    int64_t n;   /* points */
    double *x, *y; /* n each (x filled in when the caller passed NULL); one value for h/vline */
    /* contour: z[j * res + i] = f(grid x_i, grid y_j), j = 0 at y_lo */
    int res;
    double *z;
    double box[4];      /* x_lo, x_hi, y_lo, y_hi (contour, image) */
    bool grid_log[2];   /* the grid was spaced in log space along x / y */
    double *levels;
    int nlevels;
    bool filled;
    /* image: rows x cols values (z), grey from lo (black) to hi (white) */
    int rows, cols;
    double lo, hi;
} ag__series;

/* One subplot. */
typedef struct ag__axes {
    char *title, *xlabel, *ylabel;
    bool log[2];     /* x, y */
    double lim[4];   /* x_lo, x_hi, y_lo, y_hi; NAN: automatic */
    ag_plot_legend_loc legend;
    ag__series *s;
    int ns, cap;
    int ncolors;     /* colours handed out so far */
} ag__axes;

struct ag_plot {
    char *title;
    char *xlabel, *ylabel; /* defaults for new subplots */
    int width, height;     /* 0: automatic */
    int rows, cols;
    ag__axes *ax;          /* rows * cols */
    int cur;
};

/* The palette (matplotlib's tab10) and its length. */
#define AG__PALETTE_SIZE 10
extern AG_HIDDEN const char *const ag__palette[AG__PALETTE_SIZE];

/* Frees what one series holds (not the series itself). */
AG_HIDDEN void ag__series_clear(ag__series *s);

/* ---- ticks (plot/ticks.c) ---------------------------------------------------------------- */
typedef struct ag__tick {
    double at;      /* position in axis space (the value, or its log10 on a log axis) */
    char label[40]; /* "" for a minor tick */
    int exp;        /* the label is 10^exp when pow10 */
    bool pow10;
} ag__tick;
#define AG__MAX_TICKS 64
/* The ticks of [lo, hi] (axis space) of a linear or log axis, with about target
 * labelled ones; at most AG__MAX_TICKS.  Returns how many. */
AG_HIDDEN int ag__axis_ticks(double lo, double hi, bool lg, int target, ag__tick *t);
/* Approximate width in pixels of a tick's label at font size fs. */
AG_HIDDEN double ag__label_width(const ag__tick *t, double fs);
/* Up to max "nice" tick values (1, 2 or 5 times a power of ten apart) inside
 * [lo, hi], about target of them; returns how many, and their spacing in *step. */
AG_HIDDEN int ag__nice_ticks(double lo, double hi, int target, double *ticks, int max, double *step);

/* ---- marching squares over a grid z[j * nx + i], i along x, j along y ------------------- */
/* Receives one chain of n points xy[2k], xy[2k + 1] in grid coordinates ((i, j)
 * is grid point i, j; crossings are interpolated linearly along grid sides);
 * closed: the last point is the first again. */
typedef void (*ag__chain_fn)(void *ctx, const double *xy, int64_t n, bool closed);
/* Traces level over the cells with four finite corners, calling emit per chain:
 * region false - the contour lines z = level, each running with z >= level
 *                on its left (open where they leave the cells, else closed);
 * region true  - closed loops outlining the region z >= level: contour pieces
 *                and the parts of the outer sides of the finite cells above
 *                the level, counter-clockwise around the region and clockwise
 *                around holes, so filling them with the nonzero rule paints
 *                exactly the region (level -INFINITY: all finite cells).
 * Returns false on ENOMEM (some chains may have been emitted). */
AG_HIDDEN bool ag__contour_trace(const double *z, int nx, int ny, double level, bool region, ag__chain_fn emit,
                                 void *ctx);

/* ---- images ------------------------------------------------------------------------------ */
/* A PNG file (8-bit RGB) of rows x cols pixels, rgb[3 * (r * cols + c) + k] with
 * row 0 at the top, in a new buffer (ag__free it) of *n bytes.  False on ENOMEM. */
AG_HIDDEN bool ag__png_encode(const unsigned char *rgb, int rows, int cols, unsigned char **out, size_t *n);

#endif

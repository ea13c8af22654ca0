/*
 * agrad/plot.h - figures as SVG files, with no dependency: line plots, scatter
 * plots, contour plots of a function of two variables with optimisation
 * trajectories on top, greyscale images, legends, linear or logarithmic axes
 * with "nice" tick values, and several subplots in a grid.  Enough to look at
 * loss curves and optimiser paths without leaving C (matplotlib's pyplot in
 * miniature).
 *
 *     ag_plot *p = ag_plot_new("training", "epoch", "loss");
 *     ag_plot_line(p, NULL, train_loss, n, "train");
 *     ag_plot_line(p, NULL, test_loss, n, "test");
 *     ag_plot_log_scale(p, false, true);
 *     if (ag_plot_save_svg(p, "loss.svg")) fprintf(stderr, "%s\n", ag_last_error());
 *     ag_plot_free(p);
 *
 * A figure holds one subplot (axes) until ag_plot_subplot divides it into a
 * grid; every drawing call goes to the current subplot.  Series get their
 * colours in order from a fixed palette (matplotlib's "tab10"), per subplot,
 * so the k-th series of every subplot has the same colour.  The data are
 * copied: the caller's arrays may be freed after each call.
 *
 * Non-finite points (NaN, +-inf in x or y) are skipped: a line is broken there,
 * a scatter plot leaves the point out, and autoscaling ignores them.  A log
 * axis cannot show zero or negative finite values: adding them to a log axis,
 * or making an axis that holds them logarithmic, fails with AG_ERR_VALUE and
 * changes nothing.  Values outside the axis limits are clipped at the frame.
 *
 * Errors follow agrad/core.h: every function returning ag_status returns AG_OK
 * or an error code with a message in ag_last_error() (AG_ERR_ARG for a NULL
 * plot or a bad argument, AG_ERR_VALUE for values a log axis cannot show,
 * AG_ERR_NOMEM, AG_ERR_IO when saving); a failed call leaves the figure as it
 * was.  Ownership: the figure owns copies of everything it was given; free it
 * with ag_plot_free.  A figure is not thread-safe; different figures are.
 * Numbers are written with the C library's printf, so the program must run in
 * the "C" numeric locale (the default unless it calls setlocale).
 */
#ifndef AGRAD_PLOT_H
#define AGRAD_PLOT_H

#include <stdbool.h>
#include <stdint.h>
#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ag_plot ag_plot;

/* A new figure with one subplot.  title is drawn above the figure; xlabel and
 * ylabel label the axes of the first subplot and of every subplot that
 * ag_plot_subplot creates later (ag_plot_labels changes them).  Any of the
 * three may be NULL or "" for none.  The size is 640 x 480 pixels for one
 * subplot and 420 x 320 per cell of a grid unless ag_plot_size sets it.
 * Returns NULL with AG_ERR_NOMEM. */
AG_API ag_plot *ag_plot_new(const char *title, const char *xlabel, const char *ylabel);
/* Frees the figure and everything it holds.  NULL is ignored. */
AG_API void ag_plot_free(ag_plot *p);

/* Sets the size of the whole figure in pixels, each in [100, 20000]
 * (AG_ERR_ARG otherwise). */
AG_API ag_status ag_plot_size(ag_plot *p, int width, int height);

/* Divides the figure into a grid of rows x cols subplots (each in [1, 16]) and
 * makes subplot index (0-based, row by row) the current one, as pyplot's
 * subplot(rows, cols, index + 1).  The first call sets the grid: what was drawn
 * so far stays in subplot 0.  Later calls must name the same grid and only
 * select a subplot (AG_ERR_ARG otherwise, also for an index outside the grid). */
AG_API ag_status ag_plot_subplot(ag_plot *p, int rows, int cols, int index);

/* Sets the current subplot's title and axis labels; NULL keeps one as it is,
 * "" removes it. */
AG_API ag_status ag_plot_labels(ag_plot *p, const char *title, const char *xlabel, const char *ylabel);

/* Makes the current subplot's x and/or y axis logarithmic (base 10) or linear.
 * AG_ERR_VALUE if an axis to be made logarithmic already holds a value <= 0
 * (the message names the first one), or limits that are not positive. */
AG_API ag_status ag_plot_log_scale(ag_plot *p, bool log_x, bool log_y);

/* Fixes the current subplot's axis limits; NAN leaves that end automatic.
 * Automatic limits span the data with a margin of 5% (on a log axis, 5% of
 * the decades), or exactly the box of a contour plot or image when the subplot
 * has one.  AG_ERR_ARG for an infinite limit or a pair with lo >= hi;
 * AG_ERR_VALUE for a limit <= 0 on a log axis. */
AG_API ag_status ag_plot_limits(ag_plot *p, double x_lo, double x_hi, double y_lo, double y_hi);

/* Where the current subplot's legend goes.  AUTO (the default) picks the
 * inside corner that hides the fewest data points.  The legend lists every
 * series added with a non-empty label, in order; it is left out when there is
 * none. */
typedef enum ag_plot_legend_loc {
    AG_LEGEND_AUTO = 0,
    AG_LEGEND_UPPER_RIGHT,
    AG_LEGEND_UPPER_LEFT,
    AG_LEGEND_LOWER_LEFT,
    AG_LEGEND_LOWER_RIGHT,
    AG_LEGEND_OUTSIDE, /* right of the frame, outside it (the subplot's frame narrows) */
    AG_LEGEND_NONE
} ag_plot_legend_loc;
AG_API ag_status ag_plot_legend(ag_plot *p, ag_plot_legend_loc loc);

/* ---- series: n points (x[i], y[i]); x NULL means x[i] = i ------------------------ */
/* For each of these: n >= 0, and y must not be NULL unless n is 0 (AG_ERR_ARG);
 * label may be NULL (no legend entry). */
/* A line through the points in order, broken at non-finite points. */
AG_API ag_status ag_plot_line(ag_plot *p, const double *x, const double *y, int64_t n, const char *label);
/* A marker (a filled circle) at each finite point. */
AG_API ag_status ag_plot_scatter(ag_plot *p, const double *x, const double *y, int64_t n, const char *label);
/* A path, as an optimiser's iterates: a line with a small marker at each point
 * (at most 60 markers, evenly spread over the points, when there are more), an
 * open square at the first finite point and a large filled circle at the last. */
AG_API ag_status ag_plot_trajectory(ag_plot *p, const double *x, const double *y, int64_t n, const char *label);
/* A dashed horizontal line at y / vertical line at x across the whole subplot
 * (a reference value: a target loss, a chosen learning rate).  The value must be
 * finite (AG_ERR_ARG), and positive on a log axis (AG_ERR_VALUE).  It does not
 * widen the automatic limits. */
AG_API ag_status ag_plot_hline(ag_plot *p, double y, const char *label);
AG_API ag_status ag_plot_vline(ag_plot *p, double x, const char *label);

/* How a line, scatter plot, trajectory or reference line is drawn.  Zero fields
 * keep what the series has: a zeroed struct changes nothing. */
typedef struct ag_plot_style {
    const char *color; /* "#rgb", "#rrggbb" or an SVG colour name ("black"); NULL: the palette's */
    double width;      /* line width in pixels (default 1.8, trajectories 1.6), or a
                          scatter plot's marker radius (default 3); 0: keep */
    double opacity;    /* in (0, 1]; 0: keep (default 1) */
    bool dashed;       /* draw the line dashed */
    bool markers;      /* a line gets a small filled circle at each point */
} ag_plot_style;
/* Restyles the series added last to the current subplot (its legend entry
 * follows).  AG_ERR_ARG if that is not a line, scatter plot, trajectory or
 * reference line (or there is none), for a colour that is not
 * "#" and 3 or 6 hex digits or a name of 1 to 20 letters, a width outside
 * [0, 100] or an opacity outside [0, 1]. */
AG_API ag_status ag_plot_style_last(ag_plot *p, const ag_plot_style *style);

/* ---- contour plots ------------------------------------------------------------------ */
/* A function of two variables; may return NAN where it is undefined. */
typedef double (*ag_plot_fn)(double x, double y, void *ctx);

typedef struct ag_plot_contour_options {
    int resolution;       /* grid points along each axis, in [2, 1000]; 0 means 100 */
    const double *levels; /* strictly increasing finite values, or NULL for automatic ones */
    int nlevels;          /* how many levels: the length of levels, or about how many
                             automatic ones (nice values between the grid's min and max);
                             0 means 10 */
    bool filled;          /* colour the bands between levels (light colours, thin grey
                             lines at the levels); false: coloured lines only */
} ag_plot_contour_options;

/* Draws the contours of f over the box [x_lo, x_hi] x [y_lo, y_hi] into the
 * current subplot, below the series drawn in it (trajectories go on top).  f is
 * evaluated on a resolution x resolution grid of points evenly spaced over the
 * box (in log space along an axis that is logarithmic when this is called); the contours are traced by marching
 * squares with linear interpolation along the cell edges, ambiguous (saddle)
 * cells decided by the mean of their corners; a cell with a non-finite corner
 * is left out.  The automatic limits of the subplot become the box.  o NULL
 * means the defaults.  AG_ERR_ARG for a NULL f, a box that is not finite with
 * lo < hi, a bad resolution, nlevels < 0 or levels that are not strictly
 * increasing and finite; AG_ERR_VALUE for a box that a log axis cannot show. */
AG_API ag_status ag_plot_contour(ag_plot *p, ag_plot_fn f, void *ctx, double x_lo, double x_hi, double y_lo,
                                 double y_hi, const ag_plot_contour_options *o);

/* ---- images ---------------------------------------------------------------------------- */
/* Draws a rows x cols greyscale image (values row-major, row 0 at the top)
 * filling the current subplot, whose frame takes the image's shape (square
 * pixels) and loses its ticks and grid but keeps its title: values <= lo are
 * black, >= hi white, NaN is drawn red (embedded in the SVG as a PNG file).  Use one
 * subplot per image for a grid of pictures (e.g. an autoencoder's inputs and
 * reconstructions).  AG_ERR_ARG for NULL values, rows or cols outside
 * [1, 4096], or lo >= hi, either not finite. */
AG_API ag_status ag_plot_image(ag_plot *p, const double *values, int rows, int cols, double lo, double hi);

/* Draws count images of rows x cols each (values: one image after the other, each
 * row-major) tiled grid_cols to a row, left to right and top to bottom, one image
 * pixel of background between neighbours, filling the current subplot as
 * ag_plot_image does (torchvision's make_grid): a convolution's filters or its
 * feature maps in one picture.  Each image is grey from lo (black) to hi (white);
 * lo and hi both NAN scale every image to its own finite min and max instead (a
 * constant image is mid-grey).  NaN is drawn red.  AG_ERR_ARG for NULL values,
 * count or grid_cols outside [1, 4096], rows or cols outside [1, 4096], a tiling
 * wider or taller than 4096 pixels, or lo and hi neither both NAN nor finite with
 * lo < hi; AG_ERR_VALUE on a logarithmic axis, as ag_plot_image. */
AG_API ag_status ag_plot_image_grid(ag_plot *p, const double *values, int count, int rows, int cols, int grid_cols,
                                    double lo, double hi);

/* ---- output ------------------------------------------------------------------------------ */
/* Writes the figure as an SVG 1.1 document, atomically: a temporary file
 * beside path, flushed, then renamed over it, so a reader never sees half a
 * picture and an old file survives a failed write.  Returns AG_OK, AG_ERR_ARG
 * (NULL plot or path), AG_ERR_NOMEM, AG_ERR_IO (with the path and the reason). */
AG_API ag_status ag_plot_save_svg(const ag_plot *p, const char *path);
/* The same SVG document in a new NUL-terminated string that the caller frees
 * with free(); *len (may be NULL) gets its length.  NULL with AG_ERR_ARG or
 * AG_ERR_NOMEM. */
AG_API char *ag_plot_svg_string(const ag_plot *p, size_t *len);

#ifdef __cplusplus
}
#endif
#endif

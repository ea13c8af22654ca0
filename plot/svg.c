/*
 * plot/svg.c - draws an ag_plot as an SVG 1.1 document: the layout of the
 * subplots, automatic limits, nice ticks, clipping of lines at the frame,
 * contour bands and lines, images and legends.
 *
 * Tick values come from plot/ticks.c.  Coordinates are pixels with the origin at the top left.  Each axis maps its
 * limits, taken in "axis space" (the value, or its log10 on a log axis),
 * linearly onto the frame.  Lines are clipped (Liang-Barsky) to a rectangle a
 * little larger than the frame before they are written, so values far outside
 * the limits never reach the file; the frame's clip path does the exact cut.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/file.h"
#include "plot/internal.h"

/* ---- text buffer ------------------------------------------------------------------ */
typedef struct sb {
    char *s;
    size_t len, cap;
    bool failed; /* an allocation failed: the text is incomplete */
} sb;

static bool sb_reserve(sb *b, size_t extra) {
    if (b->failed) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + extra + 1) cap *= 2;
    char *s = ag__alloc(cap);
    if (!s) {
        b->failed = true;
        return false;
    }
    if (b->len) memcpy(s, b->s, b->len);
    s[b->len] = '\0';
    ag__free(b->s);
    b->s = s;
    b->cap = cap;
    return true;
}

__attribute__((format(printf, 2, 3))) static void sb_printf(sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        if (sb_reserve(b, (size_t)n)) {
            memcpy(b->s + b->len, tmp, (size_t)n + 1);
            b->len += (size_t)n;
        }
        return;
    }
    if (!sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Appends s with the XML specials escaped (and control characters dropped). */
static void sb_text(sb *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': sb_printf(b, "&amp;"); break;
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        case '\'': sb_printf(b, "&apos;"); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t') sb_printf(b, "%c", *s);
        }
    }
}

/* ---- axis limits ------------------------------------------------------------------------ */
static double to_axis(double v, bool lg) { return lg ? log10(v) : v; }

static bool has_kind(const ag__axes *a, ag__series_kind k) {
    for (int i = 0; i < a->ns; i++)
        if (a->s[i].kind == k) return true;
    return false;
}

/* The limits of dimension d (0 x, 1 y) in axis space. */
static void axis_limits(const ag__axes *a, int d, double *lo_out, double *hi_out) {
    bool lg = a->log[d];
    bool boxed = has_kind(a, AG__CONTOUR) || has_kind(a, AG__IMAGE);
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < a->ns; i++) {
        const ag__series *s = &a->s[i];
        if (boxed) {
            if (s->kind != AG__CONTOUR && s->kind != AG__IMAGE) continue;
            lo = fmin(lo, to_axis(s->box[2 * d], lg));
            hi = fmax(hi, to_axis(s->box[2 * d + 1], lg));
            continue;
        }
        if (s->kind != AG__LINE && s->kind != AG__SCATTER && s->kind != AG__TRAJECTORY) continue;
        const double *v = d ? s->y : s->x, *w = d ? s->x : s->y;
        for (int64_t k = 0; k < s->n; k++)
            if (isfinite(v[k]) && isfinite(w[k])) {
                double t = to_axis(v[k], lg);
                lo = fmin(lo, t);
                hi = fmax(hi, t);
            }
    }
    bool margin = !boxed;
    if (lo > hi) { /* no data */
        lo = 0;
        hi = 1;
        margin = false;
    } else if (lo == hi) {
        double h = lg ? 0.5 : lo == 0 ? 0.5 : fabs(lo) * 0.1;
        lo -= h;
        hi += h;
        margin = false;
    }
    /* The user's limits replace the data's; the margin is 5% of the final span, on the automatic ends. */
    double ulo = a->lim[2 * d], uhi = a->lim[2 * d + 1];
    if (!isnan(ulo)) lo = to_axis(ulo, lg);
    if (!isnan(uhi)) hi = to_axis(uhi, lg);
    if (!(lo < hi)) { /* one end fixed beyond the data */
        if (!isnan(ulo)) hi = lo + (lg ? 1 : fmax(1, fabs(lo)));
        else lo = hi - (lg ? 1 : fmax(1, fabs(hi)));
        margin = false;
    }
    if (margin) {
        double m = (hi - lo) * 0.05 / (1 - 0.05 * (isnan(ulo) + isnan(uhi)));
        if (isnan(ulo)) lo -= m;
        if (isnan(uhi)) hi += m;
    }
    *lo_out = lo;
    *hi_out = hi;
}

/* ---- the layout of one subplot ----------------------------------------------------------- */
typedef struct frame {
    double x, y, w, h;     /* the frame in pixels */
    double lo[2], hi[2];   /* limits in axis space, x and y */
    bool log[2];
} frame;

static double px_x(const frame *f, double v) {
    return f->x + (to_axis(v, f->log[0]) - f->lo[0]) / (f->hi[0] - f->lo[0]) * f->w;
}
static double px_y(const frame *f, double v) {
    return f->y + f->h - (to_axis(v, f->log[1]) - f->lo[1]) / (f->hi[1] - f->lo[1]) * f->h;
}

/* Liang-Barsky: clips the segment to r = {xmin, xmax, ymin, ymax}; false if nothing is left. */
static bool clip_segment(const double *r, double *x0, double *y0, double *x1, double *y1) {
    double dx = *x1 - *x0, dy = *y1 - *y0, t0 = 0, t1 = 1;
    double p[4] = {-dx, dx, -dy, dy}, q[4] = {*x0 - r[0], r[1] - *x0, *y0 - r[2], r[3] - *y0};
    for (int k = 0; k < 4; k++) {
        if (p[k] == 0) {
            if (q[k] < 0) return false;
            continue;
        }
        double t = q[k] / p[k];
        if (p[k] < 0) {
            if (t > t1) return false;
            if (t > t0) t0 = t;
        } else {
            if (t < t0) return false;
            if (t < t1) t1 = t;
        }
    }
    double ax = *x0 + t0 * dx, ay = *y0 + t0 * dy, bx = *x0 + t1 * dx, by = *y0 + t1 * dy;
    *x0 = ax;
    *y0 = ay;
    *x1 = bx;
    *y1 = by;
    return true;
}

/* Writes v (a multiple of 0.1 given in tenths) shortly: "12", "-0.5"; a space
 * before it when sep and it does not start with '-'. */
static void short_number(sb *b, long tenths, bool sep) {
    if (sep && tenths >= 0) sb_printf(b, " ");
    if (tenths % 10 == 0)
        sb_printf(b, "%ld", tenths / 10);
    else
        sb_printf(b, "%s%ld.%ld", tenths < 0 ? "-" : "", labs(tenths) / 10, labs(tenths) % 10);
}

/* Path data in relative moves between positions rounded to 0.1 px (so the
 * rounding does not accumulate), with the repeated 'l' left implicit.  Points
 * closer than 0.5 px to the last one written are held back and written only if
 * they end the subpath. */
typedef struct pen {
    sb *b;
    long x, y;       /* the last position written, in tenths of a pixel */
    bool open;       /* a subpath has been started */
    bool drawing;    /* an 'l' is in force */
    bool held;       /* (hx, hy) waits */
    long hx, hy;
} pen;

static void pen_point(pen *p, long qx, long qy) {
    if (!p->drawing) sb_printf(p->b, "l");
    short_number(p->b, qx - p->x, p->drawing);
    short_number(p->b, qy - p->y, true);
    p->drawing = true;
    p->x = qx;
    p->y = qy;
}

static void pen_end(pen *p) {
    if (p->held) pen_point(p, p->hx, p->hy);
    p->held = p->open = p->drawing = false;
}

static void pen_move(pen *p, double x, double y) {
    pen_end(p);
    p->x = lround(x * 10);
    p->y = lround(y * 10);
    sb_printf(p->b, "M");
    short_number(p->b, p->x, false);
    short_number(p->b, p->y, true);
    p->open = true;
}

static void pen_line(pen *p, double x, double y) {
    long qx = lround(x * 10), qy = lround(y * 10);
    if (labs(qx - p->x) < 5 && labs(qy - p->y) < 5) {
        p->held = true;
        p->hx = qx;
        p->hy = qy;
        return;
    }
    p->held = false;
    pen_point(p, qx, qy);
}

/* The path data of the polyline through the points, broken at non-finite ones
 * and clipped; writes nothing if no part is visible. */
static void polyline_path(sb *b, const frame *f, const double *x, const double *y, int64_t n) {
    const double r[4] = {f->x - 4, f->x + f->w + 4, f->y - 4, f->y + f->h + 4};
    bool have_prev = false, at_prev = false; /* the pen is at the previous point */
    double px = 0, py = 0;
    pen pn = {.b = b};
    for (int64_t i = 0; i < n; i++) {
        double cx = isfinite(x[i]) && isfinite(y[i]) ? px_x(f, x[i]) : NAN;
        double cy = isfinite(cx) ? px_y(f, y[i]) : NAN;
        if (!isfinite(cx) || !isfinite(cy)) {
            have_prev = at_prev = false;
            continue;
        }
        if (have_prev) {
            double x0 = px, y0 = py, x1 = cx, y1 = cy;
            if (clip_segment(r, &x0, &y0, &x1, &y1)) {
                if (!at_prev || x0 != px || y0 != py) pen_move(&pn, x0, y0);
                pen_line(&pn, x1, y1);
                at_prev = x1 == cx && y1 == cy;
            } else {
                at_prev = false;
            }
        }
        have_prev = true;
        px = cx;
        py = cy;
    }
    pen_end(&pn);
}

static bool inside(const frame *f, double x, double y, double pad) {
    return x >= f->x - pad && x <= f->x + f->w + pad && y >= f->y - pad && y <= f->y + f->h + pad;
}

/* ---- colours --------------------------------------------------------------------------------- */
/* viridis at t in [0, 1], mixed with white by the fraction `light`, as "#rrggbb". */
static void viridis(double t, double light, char out[8]) {
    static const unsigned char c[10][3] = {{68, 1, 84},    {72, 40, 120},  {62, 73, 137},  {49, 104, 142},
                                           {38, 130, 142}, {31, 158, 137}, {53, 183, 121}, {110, 206, 88},
                                           {181, 222, 43}, {253, 231, 37}};
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double u = t * 9;
    int k = (int)u;
    if (k > 8) k = 8;
    u -= k;
    int rgb[3];
    for (int i = 0; i < 3; i++) {
        double v = c[k][i] + u * (c[k + 1][i] - c[k][i]);
        rgb[i] = (int)lround(v + (255 - v) * light);
    }
    snprintf(out, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

/* ---- contours ---------------------------------------------------------------------------------- */
typedef struct contour_ctx {
    sb *b;
    const frame *f;
    const ag__series *s;
} contour_ctx;

/* Pixel position of grid coordinates (gi, gj) of contour s. */
static void grid_px(const contour_ctx *c, double gi, double gj, double *x, double *y) {
    const ag__series *s = c->s;
    double t[2] = {gi / (s->res - 1), gj / (s->res - 1)}, v[2];
    for (int d = 0; d < 2; d++) {
        double lo = s->box[2 * d], hi = s->box[2 * d + 1];
        v[d] = s->grid_log[d] ? pow(10, log10(lo) + t[d] * (log10(hi) - log10(lo))) : lo + t[d] * (hi - lo);
    }
    *x = px_x(c->f, v[0]);
    *y = px_y(c->f, v[1]);
}

/* A chain as path data (closed ones end with Z). */
static void emit_chain(void *ctx, const double *xy, int64_t n, bool closed) {
    contour_ctx *c = ctx;
    pen pn = {.b = c->b};
    for (int64_t k = 0; k < n - (closed ? 1 : 0); k++) {
        double x, y;
        grid_px(c, xy[2 * k], xy[2 * k + 1], &x, &y);
        k ? pen_line(&pn, x, y) : pen_move(&pn, x, y);
    }
    pen_end(&pn);
    if (closed) sb_printf(c->b, "Z");
}

static void draw_contour(sb *b, const frame *f, const ag__series *s) {
    contour_ctx c = {b, f, s};
    char col[8];
    if (s->filled) {
        for (int k = 0; k <= s->nlevels; k++) {
            viridis(s->nlevels ? (double)k / s->nlevels : 0.5, 0.65, col);
            sb_printf(b, "<path class=\"contour-band\" fill=\"%s\" stroke=\"none\" d=\"", col);
            if (!ag__contour_trace(s->z, s->res, s->res, k ? s->levels[k - 1] : -INFINITY, true, emit_chain, &c))
                b->failed = true;
            sb_printf(b, "\"/>\n");
        }
    }
    for (int k = 0; k < s->nlevels; k++) {
        if (s->filled)
            snprintf(col, sizeof col, "#606060");
        else
            viridis(s->nlevels > 1 ? (double)k / (s->nlevels - 1) : 0.5, 0, col);
        sb_printf(b, "<path class=\"contour\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" stroke-linejoin=\"round\" d=\"",
                  col, s->filled ? "0.6" : "1.2");
        if (!ag__contour_trace(s->z, s->res, s->res, s->levels[k], false, emit_chain, &c)) b->failed = true;
        sb_printf(b, "\"/>\n");
    }
}

/* ---- images ------------------------------------------------------------------------------------------ */
/* The image as an embedded PNG (base64 data URI) stretched over its box. */
static void draw_image(sb *b, const frame *f, const ag__series *s) {
    size_t npx = (size_t)s->rows * (size_t)s->cols;
    unsigned char *rgb = ag__alloc(3 * npx), *png = NULL;
    size_t n = 0;
    if (rgb) {
        for (size_t i = 0; i < npx; i++) {
            double v = s->z[i], g = (v - s->lo) / (s->hi - s->lo);
            unsigned char k = (unsigned char)lround(255 * (g < 0 ? 0 : g > 1 ? 1 : g));
            rgb[3 * i] = isnan(v) ? 255 : k; /* NaN: red */
            rgb[3 * i + 1] = rgb[3 * i + 2] = isnan(v) ? 0 : k;
        }
    }
    if (!rgb || !ag__png_encode(rgb, s->rows, s->cols, &png, &n)) {
        b->failed = true;
        ag__free(rgb);
        return;
    }
    double x0 = px_x(f, s->box[0]), x1 = px_x(f, s->box[1]), y0 = px_y(f, s->box[3]), y1 = px_y(f, s->box[2]);
    sb_printf(b, "<image class=\"image\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" preserveAspectRatio=\"none\" "
                 "image-rendering=\"optimizeSpeed\" style=\"image-rendering:pixelated\" xlink:href=\"data:image/png;base64,",
              x0, y0, x1 - x0, y1 - y0);
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (sb_reserve(b, (n + 2) / 3 * 4)) {
        char *w = b->s + b->len;
        for (size_t i = 0; i < n; i += 3) {
            uint32_t v = (uint32_t)png[i] << 16 | (i + 1 < n ? (uint32_t)png[i + 1] << 8 : 0) | (i + 2 < n ? png[i + 2] : 0);
            *w++ = digits[v >> 18];
            *w++ = digits[(v >> 12) & 63];
            *w++ = i + 1 < n ? digits[(v >> 6) & 63] : '=';
            *w++ = i + 2 < n ? digits[v & 63] : '=';
        }
        b->len = (size_t)(w - b->s);
        b->s[b->len] = '\0';
    }
    sb_printf(b, "\"/>\n");
    ag__free(png);
    ag__free(rgb);
}

/* ---- series ---------------------------------------------------------------------------------------------- */
static void marker_square(sb *b, double x, double y, double r, const char *col) {
    sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"white\" stroke=\"%s\" stroke-width=\"1.5\"/>\n",
              x - r, y - r, 2 * r, 2 * r, col);
}

/* The series' colour, and its stroke attributes (width, dashes, opacity) for a line. */
static const char *series_color(const ag__series *s) {
    return s->custom_color[0] ? s->custom_color : ag__palette[s->color];
}

static void stroke_style(sb *b, const ag__series *s, double default_width, bool dashed) {
    sb_printf(b, " stroke=\"%s\" stroke-width=\"%.2g\"", series_color(s), s->width > 0 ? s->width : default_width);
    if (dashed || s->dashed) sb_printf(b, " stroke-dasharray=\"6 4\"");
    if (s->opacity > 0 && s->opacity < 1) sb_printf(b, " stroke-opacity=\"%.3g\"", s->opacity);
}

/* A filled circle of radius r at each finite point of s inside the frame (every k-th point). */
static void point_markers(sb *b, const frame *f, const ag__series *s, double r, int64_t every) {
    for (int64_t i = 0; i < s->n; i += every) {
        if (!isfinite(s->x[i]) || !isfinite(s->y[i])) continue;
        double x = px_x(f, s->x[i]), y = px_y(f, s->y[i]);
        if (inside(f, x, y, r + 1)) sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.2g\"/>\n", x, y, r);
    }
}

static void draw_series(sb *b, const frame *f, const ag__series *s) {
    const char *col = series_color(s);
    double opacity = s->opacity > 0 ? s->opacity : 1;
    switch (s->kind) {
    case AG__LINE:
        sb_printf(b, "<path class=\"line\" fill=\"none\"");
        stroke_style(b, s, 1.8, false);
        sb_printf(b, " stroke-linejoin=\"round\" d=\"");
        polyline_path(b, f, s->x, s->y, s->n);
        sb_printf(b, "\"/>\n");
        if (s->markers) {
            sb_printf(b, "<g class=\"markers\" fill=\"%s\" fill-opacity=\"%.3g\">\n", col, opacity);
            point_markers(b, f, s, fmax(2.5, (s->width > 0 ? s->width : 1.8) + 1), 1);
            sb_printf(b, "</g>\n");
        }
        break;
    case AG__SCATTER:
        sb_printf(b, "<g class=\"scatter\" fill=\"%s\" fill-opacity=\"%.3g\">\n", col, 0.8 * opacity);
        point_markers(b, f, s, s->width > 0 ? s->width : 3, 1);
        sb_printf(b, "</g>\n");
        break;
    case AG__TRAJECTORY: {
        sb_printf(b, "<g class=\"trajectory\">\n<path fill=\"none\"");
        stroke_style(b, s, 1.6, false);
        sb_printf(b, " stroke-linejoin=\"round\" d=\"");
        polyline_path(b, f, s->x, s->y, s->n);
        sb_printf(b, "\"/>\n<g fill=\"%s\">\n", col);
        point_markers(b, f, s, 2, s->n > 60 ? (s->n + 59) / 60 : 1);
        sb_printf(b, "</g>\n");
        int64_t first = -1, last = -1;
        for (int64_t i = 0; i < s->n; i++)
            if (isfinite(s->x[i]) && isfinite(s->y[i])) {
                if (first < 0) first = i;
                last = i;
            }
        if (first >= 0) {
            double x = px_x(f, s->x[first]), y = px_y(f, s->y[first]);
            if (inside(f, x, y, 5)) marker_square(b, x, y, 3.5, col);
            x = px_x(f, s->x[last]);
            y = px_y(f, s->y[last]);
            if (inside(f, x, y, 6))
                sb_printf(b, "<circle class=\"end\" cx=\"%.1f\" cy=\"%.1f\" r=\"4.5\" fill=\"%s\" stroke=\"white\" stroke-width=\"1.2\"/>\n",
                          x, y, col);
        }
        sb_printf(b, "</g>\n");
        break;
    }
    case AG__HLINE:
    case AG__VLINE: {
        bool h = s->kind == AG__HLINE;
        double v = h ? px_y(f, s->y[0]) : px_x(f, s->x[0]);
        if (!isfinite(v)) break;
        sb_printf(b, "<line class=\"%s\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"", h ? "hline" : "vline",
                  h ? f->x : v, h ? v : f->y, h ? f->x + f->w : v, h ? v : f->y + f->h);
        stroke_style(b, s, 1.4, true);
        sb_printf(b, "/>\n");
        break;
    }
    case AG__CONTOUR: draw_contour(b, f, s); break;
    case AG__IMAGE: draw_image(b, f, s); break;
    }
}

/* ---- legend ---------------------------------------------------------------------------------------------- */
enum { LEGEND_ROW = 17, LEGEND_SAMPLE = 24 };
static const double FONT = 11;

static int legend_entries(const ag__axes *a) {
    int n = 0;
    for (int i = 0; i < a->ns; i++) n += a->s[i].label != NULL;
    return n;
}

static void legend_size(const ag__axes *a, double *w, double *h) {
    double tw = 0;
    for (int i = 0; i < a->ns; i++)
        if (a->s[i].label) tw = fmax(tw, FONT * 0.6 * (double)strlen(a->s[i].label));
    *w = 8 + LEGEND_SAMPLE + 6 + tw + 10;
    *h = 6 + LEGEND_ROW * legend_entries(a) + 2;
}

/* How many sampled data points fall in the rectangle (x, y, w, h). */
static int64_t points_in(const ag__axes *a, const frame *f, double x, double y, double w, double h) {
    int64_t count = 0;
    for (int i = 0; i < a->ns; i++) {
        const ag__series *s = &a->s[i];
        if (s->kind != AG__LINE && s->kind != AG__SCATTER && s->kind != AG__TRAJECTORY) continue;
        int64_t every = s->n > 4000 ? s->n / 4000 : 1;
        double px = NAN, py = NAN;
        for (int64_t k = 0; k < s->n; k += every) {
            if (!isfinite(s->x[k]) || !isfinite(s->y[k])) {
                px = NAN;
                continue;
            }
            double cx = px_x(f, s->x[k]), cy = px_y(f, s->y[k]);
            /* a line also counts the points along each segment */
            int steps = s->kind == AG__SCATTER || !isfinite(px) ? 1 : (int)fmax(1, fmin(16, ceil(hypot(cx - px, cy - py) / 8)));
            for (int m = 1; m <= steps; m++) {
                double t = (double)m / steps;
                double qx = steps == 1 ? cx : px + t * (cx - px), qy = steps == 1 ? cy : py + t * (cy - py);
                count += qx >= x && qx <= x + w && qy >= y && qy <= y + h;
            }
            px = cx;
            py = cy;
        }
    }
    return count;
}

static void draw_legend(sb *b, const ag__axes *a, const frame *f) {
    if (a->legend == AG_LEGEND_NONE || legend_entries(a) == 0) return;
    double w, h, x = 0, y = 0;
    legend_size(a, &w, &h);
    ag_plot_legend_loc loc = a->legend;
    const double pad = 8;
    if (loc == AG_LEGEND_AUTO) {
        int64_t best = -1;
        for (int c = AG_LEGEND_UPPER_RIGHT; c <= AG_LEGEND_LOWER_RIGHT; c++) {
            double cx = c == AG_LEGEND_UPPER_RIGHT || c == AG_LEGEND_LOWER_RIGHT ? f->x + f->w - pad - w : f->x + pad;
            double cy = c == AG_LEGEND_UPPER_RIGHT || c == AG_LEGEND_UPPER_LEFT ? f->y + pad : f->y + f->h - pad - h;
            int64_t n = points_in(a, f, cx, cy, w, h);
            if (best < 0 || n < best) {
                best = n;
                loc = (ag_plot_legend_loc)c;
            }
        }
    }
    switch (loc) {
    case AG_LEGEND_UPPER_LEFT: x = f->x + pad; y = f->y + pad; break;
    case AG_LEGEND_LOWER_LEFT: x = f->x + pad; y = f->y + f->h - pad - h; break;
    case AG_LEGEND_LOWER_RIGHT: x = f->x + f->w - pad - w; y = f->y + f->h - pad - h; break;
    case AG_LEGEND_OUTSIDE: x = f->x + f->w + 10; y = f->y; break;
    default: x = f->x + f->w - pad - w; y = f->y + pad; break;
    }
    sb_printf(b, "<g class=\"legend\">\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" rx=\"3\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#cccccc\"/>\n",
              x, y, w, h);
    int row = 0;
    for (int i = 0; i < a->ns; i++) {
        const ag__series *s = &a->s[i];
        if (!s->label) continue;
        const char *col = series_color(s);
        double cy = y + 6 + LEGEND_ROW * row + LEGEND_ROW / 2.0, sx = x + 8;
        switch (s->kind) {
        case AG__SCATTER:
            sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", sx + LEGEND_SAMPLE / 2.0, cy, col);
            break;
        case AG__CONTOUR:
        case AG__IMAGE:
            sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"10\" fill=\"#b0b0b0\"/>\n", sx, cy - 5,
                      LEGEND_SAMPLE);
            break;
        default:
            sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"", sx, cy, sx + LEGEND_SAMPLE, cy);
            stroke_style(b, s, s->kind == AG__LINE ? 1.8 : s->kind == AG__TRAJECTORY ? 1.6 : 1.4,
                         s->kind == AG__HLINE || s->kind == AG__VLINE);
            sb_printf(b, "/>\n");
            if (s->kind == AG__TRAJECTORY || s->markers)
                sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", sx + LEGEND_SAMPLE / 2.0, cy, col);
        }
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\">", sx + LEGEND_SAMPLE + 6, cy + FONT * 0.35);
        sb_text(b, s->label);
        sb_printf(b, "</text>\n");
        row++;
    }
    sb_printf(b, "</g>\n");
}

/* ---- one subplot ----------------------------------------------------------------------------------------- */
/* A tick label with its baseline at y (dominant-baseline is not honoured everywhere). */
static void tick_label(sb *b, const ag__tick *t, double x, double y, const char *anchor) {
    sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">", x, y, anchor);
    if (t->pow10)
        sb_printf(b, "10<tspan dy=\"-5\" font-size=\"8\">%d</tspan>", t->exp);
    else
        sb_text(b, t->label);
    sb_printf(b, "</text>\n");
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static void draw_axes(sb *b, const ag__axes *a, int id, double cx, double cy, double cw, double ch) {
    bool image = has_kind(a, AG__IMAGE);
    frame f = {.log = {a->log[0], a->log[1]}};
    for (int d = 0; d < 2; d++) axis_limits(a, d, &f.lo[d], &f.hi[d]);

    double top = a->title ? 28 : 12, bottom = image ? 6 : 8 + 18 + (a->xlabel ? 18 : 0), right = 14, left = 6;
    if (a->legend == AG_LEGEND_OUTSIDE && legend_entries(a)) {
        double lw, lh;
        legend_size(a, &lw, &lh);
        right += lw + 10;
    }
    ag__tick xt[AG__MAX_TICKS], yt[AG__MAX_TICKS];
    int nx = 0, ny = 0;
    f.y = cy + top;
    f.h = fmax(10, ch - top - bottom);
    if (!image) {
        ny = ag__axis_ticks(f.lo[1], f.hi[1], f.log[1], clampi((int)(f.h / 55), 3, 8), yt);
        double maxw = 0;
        for (int i = 0; i < ny; i++) maxw = fmax(maxw, ag__label_width(&yt[i], FONT));
        left = 8 + (a->ylabel ? 20 : 0) + maxw + 8;
    }
    f.x = cx + left;
    f.w = fmax(10, cw - left - right);
    if (!image) {
        for (int target = clampi((int)(f.w / (f.log[0] ? 60 : 90)), 3, 12);; target--) {
            nx = ag__axis_ticks(f.lo[0], f.hi[0], f.log[0], target, xt);
            double used = 0;
            for (int i = 0; i < nx; i++) used += xt[i].label[0] ? ag__label_width(&xt[i], FONT) + 10 : 0;
            if (used <= f.w || target <= 2) break;
        }
        /* Room for half of a label at the right end. */
        for (int i = nx - 1; i >= 0; i--)
            if (xt[i].label[0]) {
                double x = f.x + (xt[i].at - f.lo[0]) / (f.hi[0] - f.lo[0]) * f.w + ag__label_width(&xt[i], FONT) / 2 + 3;
                if (x > cx + cw) f.w -= x - (cx + cw);
                break;
            }
    } else {
        /* Square pixels: the largest frame of the image's aspect that fits, centred. */
        double aspect = (f.hi[0] - f.lo[0]) / (f.hi[1] - f.lo[1]);
        if (f.w / f.h > aspect) {
            double w = f.h * aspect;
            f.x += (f.w - w) / 2;
            f.w = w;
        } else {
            double h = f.w / aspect;
            f.y += (f.h - h) / 2;
            f.h = h;
        }
    }

    sb_printf(b, "<g class=\"axes\" id=\"axes%d\">\n", id);
    sb_printf(b, "<defs><clipPath id=\"clip%d\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath></defs>\n",
              id, f.x, f.y, f.w, f.h);
    sb_printf(b, "<rect class=\"background\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"white\"/>\n", f.x,
              f.y, f.w, f.h);
    if (!image) {
        sb_printf(b, "<g class=\"grid\" stroke=\"#e8e8e8\" stroke-width=\"1\">\n");
        for (int i = 0; i < nx; i++) {
            if (!xt[i].label[0]) continue;
            double x = f.x + (xt[i].at - f.lo[0]) / (f.hi[0] - f.lo[0]) * f.w;
            sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x, f.y, x, f.y + f.h);
        }
        for (int i = 0; i < ny; i++) {
            if (!yt[i].label[0]) continue;
            double y = f.y + f.h - (yt[i].at - f.lo[1]) / (f.hi[1] - f.lo[1]) * f.h;
            sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", f.x, y, f.x + f.w, y);
        }
        sb_printf(b, "</g>\n");
    }
    sb_printf(b, "<g class=\"data\" clip-path=\"url(#clip%d)\">\n", id);
    /* Contours and images first, the other series on top in the order given. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < a->ns; i++) {
            bool under = a->s[i].kind == AG__CONTOUR || a->s[i].kind == AG__IMAGE;
            if (under == (pass == 0)) draw_series(b, &f, &a->s[i]);
        }
    sb_printf(b, "</g>\n");
    sb_printf(b, "<rect class=\"frame\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333333\" stroke-width=\"1\"/>\n",
              f.x, f.y, f.w, f.h);
    if (!image) {
        sb_printf(b, "<g class=\"ticks\" stroke=\"#333333\" stroke-width=\"1\">\n");
        for (int i = 0; i < nx; i++) {
            double x = f.x + (xt[i].at - f.lo[0]) / (f.hi[0] - f.lo[0]) * f.w, l = xt[i].label[0] ? 4 : 2;
            sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x, f.y + f.h, x, f.y + f.h + l);
        }
        for (int i = 0; i < ny; i++) {
            double y = f.y + f.h - (yt[i].at - f.lo[1]) / (f.hi[1] - f.lo[1]) * f.h, l = yt[i].label[0] ? 4 : 2;
            sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", f.x - l, y, f.x, y);
        }
        sb_printf(b, "</g>\n<g class=\"tick-labels\" fill=\"#222222\">\n");
        for (int i = 0; i < nx; i++)
            if (xt[i].label[0])
                tick_label(b, &xt[i], f.x + (xt[i].at - f.lo[0]) / (f.hi[0] - f.lo[0]) * f.w, f.y + f.h + 7 + FONT * 0.8,
                           "middle");
        for (int i = 0; i < ny; i++)
            if (yt[i].label[0])
                tick_label(b, &yt[i], f.x - 7, f.y + f.h - (yt[i].at - f.lo[1]) / (f.hi[1] - f.lo[1]) * f.h + FONT * 0.35,
                           "end");
        sb_printf(b, "</g>\n");
        if (a->xlabel) {
            sb_printf(b, "<text class=\"xlabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">",
                      f.x + f.w / 2, f.y + f.h + 8 + 18 + 12);
            sb_text(b, a->xlabel);
            sb_printf(b, "</text>\n");
        }
        if (a->ylabel) {
            double x = cx + 8 + 12, y = f.y + f.h / 2;
            sb_printf(b, "<text class=\"ylabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 %.1f %.1f)\">",
                      x, y, x, y);
            sb_text(b, a->ylabel);
            sb_printf(b, "</text>\n");
        }
    }
    if (a->title) {
        sb_printf(b, "<text class=\"axes-title\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">",
                  f.x + f.w / 2, f.y - 7);
        sb_text(b, a->title);
        sb_printf(b, "</text>\n");
    }
    draw_legend(b, a, &f);
    sb_printf(b, "</g>\n");
}

/* ---- the figure ---------------------------------------------------------------------------------------------- */
static void render(const ag_plot *p, sb *b) {
    int cells = p->rows * p->cols;
    int w = p->width ? p->width : cells == 1 ? 640 : 420 * p->cols;
    int h = p->height ? p->height : cells == 1 ? 480 : 320 * p->rows + (p->title ? 34 : 0);
    double band = p->title ? 34 : 0;
    sb_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    sb_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" version=\"1.1\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                 "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"%g\">\n",
              w, h, w, h, FONT);
    sb_printf(b, "<rect class=\"figure\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", w, h);
    if (p->title) {
        sb_printf(b, "<text class=\"title\" x=\"%.1f\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">",
                  w / 2.0);
        sb_text(b, p->title);
        sb_printf(b, "</text>\n");
    }
    double cw = (double)w / p->cols, ch = (h - band) / p->rows;
    for (int i = 0; i < cells; i++)
        draw_axes(b, &p->ax[i], i, (i % p->cols) * cw, band + (i / p->cols) * ch, cw, ch);
    sb_printf(b, "</svg>\n");
}

char *ag_plot_svg_string(const ag_plot *p, size_t *len) {
    if (len) *len = 0;
    if (!p) return ag__fail_null(AG_ERR_ARG, "plot_svg_string: plot is NULL");
    sb b = {0};
    render(p, &b);
    char *out = b.failed ? NULL : malloc(b.len + 1);
    if (out) {
        memcpy(out, b.s, b.len + 1);
        if (len) *len = b.len;
    } else if (!b.failed) {
        ag__fail(AG_ERR_NOMEM, "plot_svg_string: out of memory");
    }
    ag__free(b.s);
    return out;
}

ag_status ag_plot_save_svg(const ag_plot *p, const char *path) {
    if (!p) return ag__fail(AG_ERR_ARG, "plot_save_svg: plot is NULL");
    sb b = {0};
    render(p, &b);
    ag_status st = b.failed ? AG_ERR_NOMEM : ag__write_file("plot_save_svg", path, b.s, b.len);
    ag__free(b.s);
    return st;
}

/*
 * The SVG plots of agrad/plot.h: every document is well-formed XML (checked by
 * a small parser here) with one <svg> root; series, legends, ticks, subplots,
 * contours and images appear as they should; non-finite points are skipped;
 * log axes refuse values they cannot show and leave the figure unchanged;
 * nice ticks; marching squares traced against a circle and a saddle; the
 * atomic save; every error by its message; allocation failures at every step.
 */
#include <dirent.h>
#include <sys/stat.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "agrad/agrad.h"
#include "plot/internal.h"
#include "tap.h"
#include "failing_alloc.h"

static const double PI = 3.14159265358979323846;

/* ---- a small XML well-formedness check ----------------------------------------------- */
/* Checks tags nest, attributes are quoted, text and attribute values hold no raw
 * '<' and only known entities, and there is one root named root.  Returns the
 * number of elements, or -1 (with a diagnostic) if the document is not well-formed. */
static int xml_check(const char *s, const char *root) {
    const char *stack[256];
    size_t stack_len[256];
    int depth = 0, elements = 0, roots = 0;
    const char *p = s;
    if (strncmp(p, "<?xml", 5) == 0) {
        p = strstr(p, "?>");
        if (!p) return diag("unterminated XML declaration"), -1;
        p += 2;
    }
    while (*p) {
        if (*p != '<') {
            if (*p == '&') {
                static const char *ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
                bool known = false;
                for (int k = 0; k < 5; k++) known |= strncmp(p, ents[k], strlen(ents[k])) == 0;
                if (!known) return diag("unknown entity at %.20s", p), -1;
            }
            if (depth == 0 && *p != ' ' && *p != '\n' && *p != '\t' && *p != '\r')
                return diag("text outside the root: %.20s", p), -1;
            p++;
            continue;
        }
        if (p[1] == '/') { /* end tag */
            const char *name = p + 2;
            size_t len = strcspn(name, " \t\n>");
            if (depth == 0 || len != stack_len[depth - 1] || strncmp(name, stack[depth - 1], len) != 0)
                return diag("unmatched end tag %.20s", p), -1;
            depth--;
            p = strchr(p, '>');
            if (!p) return diag("unterminated end tag"), -1;
            p++;
            continue;
        }
        const char *name = p + 1;
        size_t len = strcspn(name, " \t\n/>");
        if (len == 0) return diag("empty tag name at %.20s", p), -1;
        if (depth == 0) {
            roots++;
            if (len != strlen(root) || strncmp(name, root, len) != 0) return diag("root is not <%s>", root), -1;
        }
        elements++;
        p = name + len;
        for (;;) { /* attributes */
            while (*p == ' ' || *p == '\n' || *p == '\t') p++;
            if (*p == '>' || (p[0] == '/' && p[1] == '>')) break;
            size_t an = strcspn(p, "= \t\n>");
            if (an == 0 || p[an] != '=' || p[an + 1] != '"') return diag("bad attribute at %.30s", p), -1;
            const char *v = p + an + 2, *e = strchr(v, '"');
            if (!e) return diag("unterminated attribute value"), -1;
            for (const char *q = v; q < e; q++)
                if (*q == '<') return diag("'<' in an attribute value"), -1;
            p = e + 1;
        }
        if (*p == '/') {
            p += 2;
            continue;
        }
        if (depth == 256) return diag("too deep"), -1;
        stack[depth] = name;
        stack_len[depth++] = len;
        p++;
    }
    if (depth != 0) return diag("%d elements left open", depth), -1;
    if (roots != 1) return diag("%d roots", roots), -1;
    return elements;
}

/* Number of occurrences of needle in s. */
static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* The figure's SVG (free() it); checks it is well-formed. */
static char *svg_of(const ag_plot *p, const char *what) {
    size_t len = 0;
    char *s = ag_plot_svg_string(p, &len);
    ok(s && strlen(s) == len && xml_check(s, "svg") > 0, "%s: well-formed SVG (%zu bytes)", what, len);
    return s;
}

/* The path data ("d") of the n-th element with class cls. */
static const char *path_data(const char *s, const char *cls, int n, size_t *len) {
    char key[64];
    snprintf(key, sizeof key, "class=\"%s\"", cls);
    const char *p = s;
    for (int k = 0; p && k <= n; k++) {
        p = strstr(p, key);
        if (p && k < n) p += strlen(key);
    }
    if (!p) return NULL;
    p = strstr(p, " d=\"");
    if (!p) return NULL;
    p += 4;
    *len = strcspn(p, "\"");
    return p;
}

static int count_in(const char *s, size_t len, char c) {
    int n = 0;
    for (size_t i = 0; i < len; i++) n += s[i] == c;
    return n;
}

/* ---- figures ------------------------------------------------------------------------------ */
static void test_basic(void) {
    ag_plot *p = ag_plot_new("Loss & <accuracy>", "epoch", "loss");
    ok(p != NULL, "ag_plot_new");
    double x[5] = {1, 2, 3, 4, 5}, y1[5] = {5, 3, 2, 1.5, 1.2}, y2[5] = {4, 3.5, 3.2, 3.1, 3};
    ok(ag_plot_line(p, x, y1, 5, "train") == AG_OK, "line");
    ok(ag_plot_line(p, NULL, y2, 5, "test \"set\"") == AG_OK, "line with x = NULL");
    ok(ag_plot_scatter(p, x, y2, 5, NULL) == AG_OK, "scatter without a label");
    ok(ag_plot_hline(p, 2.5, "target") == AG_OK, "hline");
    char *s = svg_of(p, "two lines, a scatter, an hline");
    ok(s && count(s, "class=\"line\"") == 2, "both lines are drawn");
    ok(s && count(s, "class=\"scatter\"") == 1 && count(s, "<circle") >= 5, "the scatter's five points");
    ok(s && count(s, "class=\"hline\"") == 1, "the reference line");
    ok(s && strstr(s, ">train</text>") && strstr(s, ">test &quot;set&quot;</text>") && strstr(s, ">target</text>"),
       "the legend lists the labelled series, escaped");
    ok(s && count(s, "class=\"legend\"") == 1 && count(s, "<text x") >= 3, "one legend");
    ok(s && strstr(s, "Loss &amp; &lt;accuracy&gt;"), "the title is escaped");
    ok(s && strstr(s, ">epoch</text>") && strstr(s, ">loss</text>"), "axis labels");
    ok(s && strstr(s, ">0</text>") && strstr(s, ">2</text>") && strstr(s, ">4</text>"),
       "x ticks at nice values (0, 2, 4 for x = 0 .. 5)");
    ok(s && strstr(s, "#1f77b4") && strstr(s, "#ff7f0e") && strstr(s, "#2ca02c"), "palette colours in order");
    free(s);
    ok(ag_plot_legend(p, AG_LEGEND_NONE) == AG_OK, "legend none");
    s = svg_of(p, "without legend");
    ok(s && !strstr(s, "class=\"legend\""), "no legend drawn");
    free(s);
    for (int loc = AG_LEGEND_UPPER_RIGHT; loc <= AG_LEGEND_OUTSIDE; loc++) {
        ok(ag_plot_legend(p, (ag_plot_legend_loc)loc) == AG_OK, "legend location %d", loc);
        s = svg_of(p, "legend placed");
        ok(s && count(s, "class=\"legend\"") == 1, "legend at location %d", loc);
        free(s);
    }
    ag_plot_style st = {.color = "#123abc", .width = 3, .opacity = 0.5, .dashed = true, .markers = true};
    ok(ag_plot_legend(p, AG_LEGEND_AUTO) == AG_OK && ag_plot_line(p, x, y1, 5, "styled") == AG_OK &&
           ag_plot_style_last(p, &st) == AG_OK,
       "a styled line");
    s = svg_of(p, "styled line");
    ok(s && count(s, "stroke=\"#123abc\" stroke-width=\"3\" stroke-dasharray=\"6 4\" stroke-opacity=\"0.5\"") == 2,
       "the line and its legend sample take the style");
    const char *mk = s ? strstr(s, "class=\"markers\" fill=\"#123abc\"") : NULL;
    ok(mk && count(mk, "<circle") >= 5, "markers at the points");
    free(s);
    ok(ag_plot_style_last(p, &(ag_plot_style){.color = "#12345"}) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_style_last: \"#12345\" is not a colour (#rgb, #rrggbb or a name)") == 0,
       "a bad colour: %s", ag_last_error());
    ok(ag_plot_style_last(p, &(ag_plot_style){.color = "red\" onload=\"x"}) == AG_ERR_ARG, "a colour cannot inject markup");
    ok(ag_plot_style_last(p, &(ag_plot_style){.opacity = 2}) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_style_last: width 0 must lie in [0, 100] and opacity 2 in [0, 1]") == 0,
       "opacity 2: %s", ag_last_error());
    ok(ag_plot_style_last(p, NULL) == AG_ERR_ARG && strcmp(ag_last_error(), "plot_style_last: style is NULL") == 0,
       "NULL style");
    ok(ag_plot_style_last(p, &(ag_plot_style){.color = "black"}) == AG_OK, "a colour name");
    ok(ag_plot_legend(p, (ag_plot_legend_loc)42) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_legend: unknown location 42") == 0,
       "unknown legend location: %s", ag_last_error());
    ag_plot_free(p);
}

static void test_empty(void) {
    ag_plot *p = ag_plot_new(NULL, NULL, NULL);
    ok(ag_plot_style_last(p, &(ag_plot_style){0}) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_style_last: the current subplot has no line, scatter or trajectory to style") == 0,
       "style without a series: %s", ag_last_error());
    char *s = svg_of(p, "an empty figure");
    ok(s && count(s, "class=\"frame\"") == 1 && !strstr(s, "class=\"legend\"") && !strstr(s, "class=\"title\""),
       "an empty figure has a frame and nothing else");
    ok(s && strstr(s, ">0.0</text>") && strstr(s, ">1.0</text>"), "an empty axis spans [0, 1]");
    free(s);
    ok(ag_plot_line(p, NULL, NULL, 0, "nothing") == AG_OK, "an empty series");
    s = svg_of(p, "an empty series");
    size_t len = 1;
    const char *d = s ? path_data(s, "line", 0, &len) : NULL;
    ok(d && len == 0, "an empty series draws an empty path");
    free(s);
    ag_plot_free(p);
}

static void test_nonfinite(void) {
    ag_plot *p = ag_plot_new("non-finite", "x", "y");
    double x[7] = {0, 1, 2, 3, 4, 5, 6}, y[7] = {1, 2, NAN, 3, INFINITY, 4, 5};
    ok(ag_plot_line(p, x, y, 7, "broken") == AG_OK, "a line with NaN and inf");
    double sx[4] = {0, NAN, 2, -INFINITY}, sy[4] = {1, 1, 2, 2};
    ok(ag_plot_scatter(p, sx, sy, 4, "some") == AG_OK, "a scatter with NaN and -inf");
    char *s = svg_of(p, "non-finite points");
    size_t len = 0;
    const char *d = s ? path_data(s, "line", 0, &len) : NULL;
    /* Segments 0-1 and 5-6 remain: the line breaks at the NaN and at the inf. */
    ok(d && count_in(d, len, 'M') == 2 && count_in(d, len, 'l') == 2, "the line is broken at each non-finite point");
    const char *sc = s ? strstr(s, "class=\"scatter\"") : NULL;
    const char *end = sc ? strstr(sc, "</g>") : NULL;
    int circles = 0;
    for (const char *q = sc; q && q < end && (q = strstr(q, "<circle")) && q < end; q++) circles++;
    ok(circles == 2, "the scatter skips its non-finite points (%d drawn)", circles);
    ok(s && !strstr(s, "nan") && !strstr(s, "inf") && !strstr(s, "NaN"), "no nan or inf in the document");
    ok(s && strstr(s, ">6</text>") && strstr(s, ">5</text>"), "autoscaling ignores the non-finite values");
    free(s);
    ag_plot_free(p);

    /* Values far outside the limits are clipped before they are written. */
    p = ag_plot_new(NULL, NULL, NULL);
    double bx[3] = {0, 1, 2}, by[3] = {0, 1e300, 1};
    ok(ag_plot_line(p, bx, by, 3, NULL) == AG_OK && ag_plot_limits(p, NAN, NAN, 0, 2) == AG_OK, "a huge value, fixed limits");
    s = svg_of(p, "clipping");
    d = s ? path_data(s, "line", 0, &len) : NULL;
    bool small = d != NULL;
    for (size_t i = 0; d && i < len; i++)
        if ((d[i] >= '0' && d[i] <= '9') && (i == 0 || !(d[i - 1] >= '0' && d[i - 1] <= '9') ) && strtod(d + i, NULL) > 2000)
            small = false;
    ok(small && d && count_in(d, len, 'M') == 2, "the line leaves and re-enters the frame with small coordinates");
    free(s);
    ag_plot_free(p);
}

static void test_log(void) {
    ag_plot *p = ag_plot_new("log", "lr", "loss");
    double x[4] = {1e-4, 1e-3, 1e-2, 1e-1}, y[4] = {2, 1, 0.5, 3};
    ok(ag_plot_log_scale(p, true, false) == AG_OK, "log x");
    ok(ag_plot_line(p, x, y, 4, "loss") == AG_OK, "positive x on a log axis");
    char *before = svg_of(p, "log x axis");
    ok(before && count(before, "<tspan") >= 3 && strstr(before, ">-3</tspan>"), "decade ticks 10^k on a log axis");
    double bad[4] = {1e-3, 0, 1e-2, -1};
    ok(ag_plot_line(p, bad, y, 4, "bad") == AG_ERR_VALUE &&
           strcmp(ag_last_error(), "plot_line: a log x axis cannot show x = 0 (series 1, point 1)") == 0,
       "zero on a log axis: %s", ag_last_error());
    ok(ag_plot_scatter(p, NULL, y, 4, NULL) == AG_ERR_VALUE, "x = NULL (0, 1, ...) on a log x axis");
    ok(ag_plot_vline(p, -1, NULL) == AG_ERR_VALUE &&
           strcmp(ag_last_error(), "plot_vline: a log x axis cannot show x = -1 (series 1, point 0)") == 0,
       "a negative vline: %s", ag_last_error());
    ok(ag_plot_limits(p, 0, 1, NAN, NAN) == AG_ERR_VALUE &&
           strcmp(ag_last_error(), "plot_limits: a log x axis needs positive limits, got 0") == 0,
       "a zero limit on a log axis: %s", ag_last_error());
    char *after = svg_of(p, "after the refusals");
    ok(before && after && strcmp(before, after) == 0, "refused calls leave the figure unchanged");
    free(after);
    free(before);
    double ny[4] = {1, NAN, -INFINITY, 2};
    ok(ag_plot_line(p, x, ny, 4, NULL) == AG_OK, "non-finite values are skipped, not refused, on a log axis");
    double neg[2] = {-1, 1}, one[2] = {1, 2};
    ok(ag_plot_line(p, one, neg, 2, NULL) == AG_OK, "a negative y on the linear y axis");
    ok(ag_plot_log_scale(p, true, true) == AG_ERR_VALUE &&
           strcmp(ag_last_error(), "plot_log_scale: a log y axis cannot show y = -1 (series 2, point 0)") == 0,
       "making an axis with a negative value logarithmic: %s", ag_last_error());
    char *s = svg_of(p, "log y refused");
    ok(s && strstr(s, ">0.0</text>") != NULL, "the y axis stayed linear");
    free(s);
    ag_plot_free(p);

    p = ag_plot_new(NULL, NULL, NULL);
    ok(ag_plot_limits(p, NAN, NAN, -1, 1) == AG_OK, "limits [-1, 1]");
    ok(ag_plot_log_scale(p, false, true) == AG_ERR_VALUE &&
           strcmp(ag_last_error(), "plot_log_scale: a log y axis needs positive limits, got -1") == 0,
       "log scale with a negative limit: %s", ag_last_error());
    ok(ag_plot_limits(p, NAN, NAN, NAN, NAN) == AG_OK && ag_plot_log_scale(p, false, true) == AG_OK, "log y");
    double y2[3] = {0.02, 0.05, 0.3};
    ok(ag_plot_line(p, NULL, y2, 3, NULL) == AG_OK, "a line on log y");
    s = svg_of(p, "log y under two decades");
    ok(s && strstr(s, ">0.05</text>") && strstr(s, ">0.1</text>") && strstr(s, ">0.2</text>"),
       "under three decades, 1-2-5 ticks are labelled");
    free(s);
    ok(ag_plot_hline(p, 0, NULL) == AG_ERR_VALUE, "hline at 0 on a log y axis");
    ok(ag_plot_hline(p, NAN, NULL) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_hline: the value must be finite, got nan") == 0,
       "hline at NaN: %s", ag_last_error());
    ok(ag_plot_image(p, y2, 1, 3, 0, 1) == AG_ERR_VALUE &&
           strcmp(ag_last_error(), "plot_image: an image needs linear axes, the y axis is logarithmic") == 0,
       "an image on a log axis: %s", ag_last_error());
    ag_plot_free(p);
}

static void test_ticks(void) {
    double t[64], step;
    int n = ag__nice_ticks(0, 1, 5, t, 64, &step);
    ok(n == 6 && step == 0.2 && t[0] == 0 && fabs(t[5] - 1) < 1e-12, "[0, 1]: 0, 0.2, ..., 1 (%d ticks)", n);
    n = ag__nice_ticks(-3.7, 12.1, 4, t, 64, &step);
    ok(n == 3 && step == 5 && t[0] == 0 && t[2] == 10, "[-3.7, 12.1]: 0, 5, 10 (%d, step %g)", n, step);
    n = ag__nice_ticks(-1, 1, 4, t, 64, &step);
    ok(n == 5 && step == 0.5 && t[2] == 0 && !signbit(t[2]), "[-1, 1]: an exact zero in the middle");
    n = ag__nice_ticks(1e-3, 1.3e-3, 5, t, 64, &step);
    ok(n >= 3 && n <= 7 && fabs(step - 5e-5) < 1e-18, "[0.001, 0.0013]: step 5e-5 (%d ticks)", n);
    ok(ag__nice_ticks(1, 1, 5, t, 64, &step) == 0, "an empty range has no ticks");
    ag_plot *p = ag_plot_new(NULL, NULL, NULL);
    double x[2] = {0, 3e6}, y[2] = {1e-5, 3e-5};
    ok(ag_plot_line(p, x, y, 2, NULL) == AG_OK, "large and small values");
    char *s = svg_of(p, "exponent labels");
    ok(s && strstr(s, ">1e6</text>") && strstr(s, ">2e-5</text>") && !strstr(s, "e+"),
       "large and small tick labels use short exponents");
    free(s);
    ag_plot_free(p);
}

static void test_subplots(void) {
    ag_plot *p = ag_plot_new("grid", "x", "y");
    double y[3] = {1, 2, 3};
    ok(ag_plot_line(p, NULL, y, 3, "first") == AG_OK, "a line before the grid");
    ok(ag_plot_subplot(p, 2, 3, 4) == AG_OK, "a 2 x 3 grid, subplot 4");
    ok(ag_plot_line(p, NULL, y, 3, "fifth") == AG_OK && ag_plot_labels(p, "panel 5", "", NULL) == AG_OK,
       "a line and labels in subplot 4");
    ok(ag_plot_subplot(p, 3, 2, 0) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_subplot: the figure is already a 2 x 3 grid, not 3 x 2") == 0,
       "another grid: %s", ag_last_error());
    ok(ag_plot_subplot(p, 2, 3, 6) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_subplot: index 6 is outside the 2 x 3 grid") == 0,
       "index outside: %s", ag_last_error());
    ok(ag_plot_subplot(p, 0, 3, 0) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_subplot: rows and cols must lie in [1, 16], got 0 x 3") == 0,
       "zero rows: %s", ag_last_error());
    char *s = svg_of(p, "subplots");
    ok(s && count(s, "class=\"axes\"") == 6 && count(s, "class=\"frame\"") == 6, "six subplots");
    ok(s && count(s, "class=\"line\"") == 2 && strstr(s, ">first</text>") && strstr(s, ">fifth</text>"),
       "the line drawn before the grid stays in subplot 0");
    ok(s && strstr(s, ">panel 5</text>") && count(s, "class=\"xlabel\"") == 5 && count(s, "class=\"ylabel\"") == 6,
       "subplot labels: the default ones, one removed");
    ok(s && strstr(s, "width=\"1260\" height=\"674\""), "default size 420 x 320 per cell plus the title");
    free(s);
    ok(ag_plot_size(p, 99, 500) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_size: width and height must lie in [100, 20000], got 99 x 500") == 0,
       "too small: %s", ag_last_error());
    ok(ag_plot_size(p, 900, 500) == AG_OK, "size 900 x 500");
    s = svg_of(p, "resized");
    ok(s && strstr(s, "width=\"900\" height=\"500\""), "the size is used");
    free(s);
    ag_plot_free(p);
}

static double circle(double x, double y, void *ctx) {
    (void)ctx;
    return x * x + y * y;
}

static double with_hole(double x, double y, void *ctx) {
    (void)ctx;
    return fabs(x) < 0.5 && fabs(y) < 0.5 ? NAN : x + y;
}

typedef struct chains {
    double area;      /* shoelace sum over closed chains, in grid units */
    double max_error; /* of |radius - 1| in data units for the circle */
    int open, closed, points;
    double scale, offset; /* grid -> data */
} chains;

static void collect(void *ctx, const double *xy, int64_t n, bool is_closed) {
    chains *c = ctx;
    is_closed ? c->closed++ : c->open++;
    for (int64_t k = 0; k < n; k++) {
        double x = xy[2 * k] * c->scale + c->offset, y = xy[2 * k + 1] * c->scale + c->offset;
        c->max_error = fmax(c->max_error, fabs(hypot(x, y) - 1));
        if (k + 1 < n) c->area += (xy[2 * k] * xy[2 * k + 3] - xy[2 * k + 2] * xy[2 * k + 1]) / 2;
        c->points++;
    }
}

static void test_marching_squares(void) {
    enum { N = 101 };
    static double z[N * N];
    const double h = 4.0 / (N - 1);
    for (int j = 0; j < N; j++)
        for (int i = 0; i < N; i++) z[j * N + i] = circle(-2 + i * h, -2 + j * h, NULL);
    chains c = {.scale = h, .offset = -2};
    ok(ag__contour_trace(z, N, N, 1, false, collect, &c), "trace the unit circle");
    ok(c.closed == 1 && c.open == 0 && c.points > 50, "one closed line (%d points)", c.points);
    ok(c.max_error < 2e-3, "its points lie on the circle (error %.2g)", c.max_error);
    ok(c.area < 0, "it runs clockwise, with the region z >= 1 (outside) on its left");
    double inside = fabs(c.area) * h * h;
    close_to(inside, PI, 2e-3, "it encloses pi (%.5f)", inside);
    c = (chains){.scale = h, .offset = -2};
    ok(ag__contour_trace(z, N, N, 1, true, collect, &c), "trace the region z >= 1");
    close_to(c.area * h * h, 16 - PI, 2e-3, "the region's outline encloses 16 - pi (%.5f)", c.area * h * h);
    c = (chains){.scale = h, .offset = -2};
    ok(ag__contour_trace(z, N, N, -INFINITY, true, collect, &c) && c.closed == 1, "level -inf: one loop");
    close_to(c.area * h * h, 16, 1e-12, "covering the whole box (%.5f)", c.area * h * h);
    c = (chains){.scale = h, .offset = -2};
    ok(ag__contour_trace(z, N, N, 100, true, collect, &c) && c.closed == 0 && c.open == 0, "a level above everything: nothing");

    /* A saddle: z = x·y on [-1, 1]² with a grid point at 0. */
    enum { S = 21 };
    static double zs[S * S];
    for (int j = 0; j < S; j++)
        for (int i = 0; i < S; i++) zs[j * S + i] = (i - 10.0) * (j - 10.0) + 0.5;
    c = (chains){.scale = 1, .offset = 0};
    ok(ag__contour_trace(zs, S, S, 0, true, collect, &c), "trace a saddle region");
    ok(c.open == 0 && c.closed >= 1, "its outline is closed loops (%d)", c.closed);
    double lines_area = c.area;
    c = (chains){.scale = 1, .offset = 0};
    bool traced = ag__contour_trace(zs, S, S, 0, false, collect, &c);
    ok(traced && c.open == 2 && c.closed == 0,
       "the saddle's contour is two open lines (%d open, %d closed)", c.open, c.closed);
    ok(lines_area > 190 && lines_area < 260, "the saddle region covers about half the box (%.1f of 400)", lines_area);

    /* A hole of NaN: the region outline goes around it, clockwise. */
    for (int j = 0; j < N; j++)
        for (int i = 0; i < N; i++) z[j * N + i] = with_hole(-2 + i * h, -2 + j * h, NULL);
    c = (chains){.scale = h, .offset = -2};
    ok(ag__contour_trace(z, N, N, -INFINITY, true, collect, &c) && c.closed == 2, "a NaN hole: two loops");
    ok(c.area * h * h < 16 - 0.9 && c.area * h * h > 16 - 1.3, "the hole is left out (area %.3f)", c.area * h * h);
}

static void test_contour(void) {
    ag_plot *p = ag_plot_new("contours", "x", "y");
    double levels[3] = {0.25, 1, 2};
    ag_plot_contour_options o = {.levels = levels, .nlevels = 3, .filled = true, .resolution = 60};
    ok(ag_plot_contour(p, circle, NULL, -2, 2, -2, 2, &o) == AG_OK, "a filled contour");
    double tx[100], ty[100];
    for (int i = 0; i < 100; i++) {
        tx[i] = 1.5 * exp(-i / 20.0);
        ty[i] = -1.5 * exp(-i / 30.0);
    }
    ok(ag_plot_trajectory(p, tx, ty, 100, "descent") == AG_OK, "a trajectory on top");
    char *s = svg_of(p, "filled contour with a trajectory");
    ok(s && count(s, "class=\"contour-band\"") == 4 && count(s, "class=\"contour\"") == 3, "4 bands and 3 lines");
    const char *traj = s ? strstr(s, "class=\"trajectory\"") : NULL;
    ok(traj && traj > strstr(s, "class=\"contour\""), "the trajectory is drawn after the contours");
    ok(traj && count(traj, "r=\"2\"") == 50 && count(traj, "class=\"end\"") == 1,
       "100 points get 50 markers (every 2nd) and an end marker");
    ok(s && strstr(s, ">-2.0</text>") && strstr(s, ">2.0</text>") && !strstr(s, ">2.5</text>"), "the limits are the box");
    free(s);

    ok(ag_plot_subplot(p, 1, 2, 1) == AG_OK, "second subplot");
    ok(ag_plot_contour(p, circle, NULL, -1, 1, -1, 1, NULL) == AG_OK, "automatic levels, lines");
    s = svg_of(p, "line contours");
    ok(s && count(s, "class=\"contour\"") >= 3 + 6 && count(s, "class=\"contour-band\"") == 4,
       "automatic levels give several lines (%d)", s ? count(s, "class=\"contour\"") - 3 : -1);
    free(s);

    ok(ag_plot_contour(p, NULL, NULL, -1, 1, -1, 1, NULL) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_contour: f is NULL") == 0,
       "NULL f: %s", ag_last_error());
    ok(ag_plot_contour(p, circle, NULL, 1, -1, -1, 1, NULL) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_contour: the box [1, -1] x [-1, 1] must be finite with lo < hi") == 0,
       "reversed box: %s", ag_last_error());
    o = (ag_plot_contour_options){.resolution = 1};
    ok(ag_plot_contour(p, circle, NULL, -1, 1, -1, 1, &o) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_contour: resolution must lie in [2, 1000], got 1") == 0,
       "resolution 1: %s", ag_last_error());
    double bad[3] = {1, 1, 2};
    o = (ag_plot_contour_options){.levels = bad, .nlevels = 3};
    ok(ag_plot_contour(p, circle, NULL, -1, 1, -1, 1, &o) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_contour: levels must be finite and strictly increasing (level 1 is 1)") == 0,
       "repeated level: %s", ag_last_error());
    o = (ag_plot_contour_options){.levels = bad, .nlevels = 0};
    ok(ag_plot_contour(p, circle, NULL, -1, 1, -1, 1, &o) == AG_ERR_ARG &&
           strcmp(ag_last_error(),
                  "plot_contour: nlevels must be positive with levels, non-negative without, got 0") == 0,
       "levels without nlevels: %s", ag_last_error());
    ok(ag_plot_log_scale(p, true, false) == AG_ERR_VALUE, "a contour box from -1 refuses a log x axis");
    ag_plot_free(p);

    /* A contour on log axes samples the grid in log space. */
    p = ag_plot_new(NULL, NULL, NULL);
    ok(ag_plot_log_scale(p, true, true) == AG_OK && ag_plot_contour(p, circle, NULL, 0.1, 10, 0.1, 10, NULL) == AG_OK,
       "a contour on log axes");
    s = svg_of(p, "log contour");
    ok(s && count(s, "class=\"contour\"") > 3, "drawn");
    free(s);
    ok(ag_plot_contour(p, circle, NULL, 0, 10, 0.1, 10, NULL) == AG_ERR_VALUE &&
           strcmp(ag_last_error(), "plot_contour: a log x axis cannot show x = 0 (series 1, point 0)") == 0,
       "a box from 0 on a log axis: %s", ag_last_error());
    ag_plot_free(p);
}

/* Decodes base64 text (up to its closing quote) into out; returns the byte count. */
static size_t unbase64(const char *in, unsigned char *out, size_t max) {
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (; *in && *in != '"' && *in != '='; in++) {
        const char *d = strchr(digits, *in);
        if (!d) return 0;
        acc = acc << 6 | (uint32_t)(d - digits);
        bits += 6;
        if (bits >= 8 && n < max) out[n++] = (unsigned char)(acc >> (bits -= 8));
    }
    return n;
}

static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static void test_image(void) {
    ag_plot *p = ag_plot_new("images", NULL, NULL);
    double v[6] = {0, 0, 0, 1, 0.5, NAN};
    ok(ag_plot_subplot(p, 1, 2, 1) == AG_OK && ag_plot_image(p, v, 2, 3, 0, 1) == AG_OK, "a 2 x 3 image");
    char *s = svg_of(p, "image");
    const char *img = s ? strstr(s, "<image class=\"image\"") : NULL;
    const char *uri = img ? strstr(img, "xlink:href=\"data:image/png;base64,") : NULL;
    unsigned char png[4096];
    size_t n = uri ? unbase64(uri + strlen("xlink:href=\"data:image/png;base64,"), png, sizeof png) : 0;
    ok(n > 8 + 25 + 12 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0, "an embedded PNG (%zu bytes)", n);
    ok(n > 33 && memcmp(png + 12, "IHDR", 4) == 0 && be32(png + 16) == 3 && be32(png + 20) == 2 && png[24] == 8 &&
           png[25] == 2,
       "its header: 3 x 2 pixels, 8-bit RGB");
    ok(n > 33 && be32(png + 29) == (uint32_t)crc32(crc32(0, Z_NULL, 0), png + 12, 17), "the header's CRC");
    unsigned char pixels[64];
    uLongf plen = sizeof pixels;
    bool inflated = n > 41 && memcmp(png + 37, "IDAT", 4) == 0 &&
                    uncompress(pixels, &plen, png + 41, be32(png + 33)) == Z_OK && plen == 2 * (1 + 9);
    const unsigned char want[20] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 128, 128, 128, 255, 0, 0};
    ok(inflated && memcmp(pixels, want, sizeof want) == 0, "its pixels: black, white, grey 128 and red for NaN");
    ok(n >= 12 && memcmp(png + n - 8, "IEND", 4) == 0, "it ends with IEND");
    ok(s && strstr(s, "xmlns:xlink=\"http://www.w3.org/1999/xlink\""), "the root declares the xlink namespace");
    ok(s && count(s, "class=\"ticks\"") == 1, "an image subplot has no ticks (the empty one has)");
    free(s);
    ok(ag_plot_image(p, NULL, 2, 3, 0, 1) == AG_ERR_ARG && strcmp(ag_last_error(), "plot_image: values is NULL") == 0,
       "NULL values: %s", ag_last_error());
    ok(ag_plot_image(p, v, 0, 3, 0, 1) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_image: rows and cols must lie in [1, 4096], got 0 x 3") == 0,
       "zero rows: %s", ag_last_error());
    ok(ag_plot_image(p, v, 2, 3, 1, 1) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_image: need finite lo < hi, got 1 and 1") == 0,
       "lo == hi: %s", ag_last_error());
    ag_plot_free(p);
}

/* The grey levels (the red channel) of the PNG embedded in the image element at img,
 * its size in *w x *h; false if it does not decode. */
static bool image_greys(const char *img, unsigned char *grey, int max, int *w, int *h) {
    const char *uri = strstr(img, "xlink:href=\"data:image/png;base64,");
    unsigned char png[4096], rows[4096];
    size_t n = uri ? unbase64(uri + strlen("xlink:href=\"data:image/png;base64,"), png, sizeof png) : 0;
    if (n < 41 || memcmp(png + 12, "IHDR", 4) != 0 || memcmp(png + 37, "IDAT", 4) != 0) return false;
    *w = (int)be32(png + 16);
    *h = (int)be32(png + 20);
    uLongf len = sizeof rows;
    if (*w * *h > max || uncompress(rows, &len, png + 41, be32(png + 33)) != Z_OK || len != (uLongf)*h * (1 + 3 * *w))
        return false;
    for (int r = 0; r < *h; r++)
        for (int c = 0; c < *w; c++) grey[r * *w + c] = rows[r * (1 + 3 * *w) + 1 + 3 * c]; /* after the filter byte */
    return true;
}

/* The value of attribute name (" x=\"") of the element at tag. */
static double attr(const char *tag, const char *name) {
    const char *a = strstr(tag, name);
    return a ? strtod(a + strlen(name), NULL) : NAN;
}

static void test_image_grid(void) {
    /* Three 1 x 2 images, two to a row: [0, 1], [10, 30], a constant [5, 5]. */
    double v[6] = {0, 1, 10, 30, 5, 5};
    ag_plot *p = ag_plot_new("grid", NULL, NULL);
    ok(ag_plot_image_grid(p, v, 3, 1, 2, 2, NAN, NAN) == AG_OK, "three 1 x 2 images, two to a row, each scaled");
    char *s = svg_of(p, "image grid");
    const char *img[4] = {s ? strstr(s, "<image class=\"image\"") : NULL, NULL, NULL, NULL};
    for (int k = 1; k < 4 && img[k - 1]; k++) img[k] = strstr(img[k - 1] + 1, "<image class=\"image\"");
    ok(img[2] && !img[3], "one image element per tile");
    unsigned char g[3][8];
    int w = 0, h = 0, sizes_ok = 1;
    for (int k = 0; k < 3; k++) {
        bool got = img[k] && image_greys(img[k], g[k], 8, &w, &h);
        sizes_ok &= got && w == 2 && h == 1;
    }
    ok(sizes_ok, "each tile is its own 2 x 1 PNG");
    ok(sizes_ok && g[0][0] == 0 && g[0][1] == 255 && g[1][0] == 0 && g[1][1] == 255 && g[2][0] == 128 && g[2][1] == 128,
       "each tile spans black to white over its own range, the constant one mid-grey");
    double x0 = img[2] ? attr(img[0], " x=\"") : NAN, x1 = img[2] ? attr(img[1], " x=\"") : NAN;
    double x2 = img[2] ? attr(img[2], " x=\"") : NAN, tw = img[2] ? attr(img[0], " width=\"") : NAN;
    double y0 = img[2] ? attr(img[0], " y=\"") : NAN, y2 = img[2] ? attr(img[2], " y=\"") : NAN;
    double th = img[2] ? attr(img[0], " height=\"") : NAN;
    ok(fabs(x1 - x0 - 1.5 * tw) < 0.02 && fabs(x2 - x0) < 0.02 && fabs(y2 - y0 - 2 * th) < 0.02 && fabs(tw - 2 * th) < 0.02,
       "tiles left to right then top to bottom, one pixel apart, square pixels (x %g %g %g, y %g %g, %g x %g)", x0, x1,
       x2, y0, y2, tw, th);
    free(s);
    ag_plot_free(p);

    /* One range for all. */
    p = ag_plot_new(NULL, NULL, NULL);
    ok(ag_plot_image_grid(p, v, 2, 1, 2, 8, 0, 1) == AG_OK, "two images with lo 0, hi 1");
    s = svg_of(p, "image grid, one range");
    const char *second = s ? strstr(s, "<image class=\"image\"") : NULL;
    second = second ? strstr(second + 1, "<image class=\"image\"") : NULL;
    ok(second && image_greys(second, g[0], 8, &w, &h) && g[0][0] == 255 && g[0][1] == 255, "values above hi are white");
    free(s);

    /* Errors leave the figure as it was. */
    char *before = ag_plot_svg_string(p, NULL);
    ok(ag_plot_image_grid(p, NULL, 2, 1, 2, 2, NAN, NAN) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_image_grid: values is NULL") == 0, "NULL values: %s", ag_last_error());
    ok(ag_plot_image_grid(p, v, 0, 1, 2, 2, NAN, NAN) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_image_grid: count and grid_cols must lie in [1, 4096], got 0 and 2") == 0,
       "no image: %s", ag_last_error());
    ok(ag_plot_image_grid(p, v, 2, 1, 0, 2, NAN, NAN) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_image_grid: rows and cols must lie in [1, 4096], got 1 x 0") == 0,
       "zero cols: %s", ag_last_error());
    ok(ag_plot_image_grid(p, v, 2000, 1, 2, 2000, NAN, NAN) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_image_grid: 2000 images of 1 x 2, 2000 to a row, tile 1 x 5999 pixels, "
                                   "more than 4096 a side") == 0,
       "a tiling too wide: %s", ag_last_error());
    ok(ag_plot_image_grid(p, v, 2, 1, 2, 2, NAN, 1) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_image_grid: need lo and hi both NAN, or finite with lo < hi, got nan and 1") == 0,
       "one NAN limit: %s", ag_last_error());
    ok(ag_plot_log_scale(p, false, true) == AG_ERR_VALUE, "the images refuse a log axis");
    ag_plot *q = ag_plot_new(NULL, NULL, NULL);
    ok(ag_plot_log_scale(q, true, false) == AG_OK && ag_plot_image_grid(q, v, 2, 1, 2, 2, NAN, NAN) == AG_ERR_VALUE &&
           strcmp(ag_last_error(), "plot_image_grid: an image needs linear axes, the x axis is logarithmic") == 0,
       "on a log axis: %s", ag_last_error());
    ag_plot_free(q);
    char *after = ag_plot_svg_string(p, NULL);
    ok(before && after && strcmp(before, after) == 0, "the failed calls changed nothing");
    free(before);
    free(after);
    ag_plot_free(p);
}

static void test_errors(void) {
    double y[2] = {1, 2};
    ok(ag_plot_line(NULL, NULL, y, 2, NULL) == AG_ERR_ARG && strcmp(ag_last_error(), "plot_line: plot is NULL") == 0,
       "NULL plot: %s", ag_last_error());
    ok(ag_plot_save_svg(NULL, "x.svg") == AG_ERR_ARG, "save a NULL plot");
    ok(ag_plot_svg_string(NULL, NULL) == NULL && strcmp(ag_last_error(), "plot_svg_string: plot is NULL") == 0,
       "svg_string of NULL: %s", ag_last_error());
    ag_plot_free(NULL);
    ag_plot *p = ag_plot_new(NULL, NULL, NULL);
    ok(ag_plot_line(p, NULL, NULL, 2, NULL) == AG_ERR_ARG && strcmp(ag_last_error(), "plot_line: y is NULL") == 0,
       "NULL y: %s", ag_last_error());
    ok(ag_plot_trajectory(p, NULL, y, -1, NULL) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_trajectory: n must be non-negative, got -1") == 0,
       "negative n: %s", ag_last_error());
    ok(ag_plot_limits(p, 1, 1, NAN, NAN) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "plot_limits: x limits must be finite with lo < hi, got 1 and 1") == 0,
       "empty limits: %s", ag_last_error());
    ok(ag_plot_limits(p, NAN, NAN, NAN, INFINITY) == AG_ERR_ARG, "an infinite limit");
    ok(ag_plot_limits(p, 2, NAN, NAN, NAN) == AG_OK && ag_plot_line(p, NULL, y, 2, NULL) == AG_OK,
       "only a lower limit, beyond the data");
    char *s = svg_of(p, "a lower limit above the data");
    ok(s && strstr(s, ">2.0</text>"), "the axis starts at the limit");
    free(s);
    ag_plot_free(p);
}

static void test_save(void) {
    char dir[] = "/tmp/agrad-plot-XXXXXX";
    if (!mkdtemp(dir)) {
        ok(0, "mkdtemp");
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/fig.svg", dir);
    ag_plot *p = ag_plot_new("saved", "x", "y");
    double y[3] = {3, 1, 2};
    ag_plot_line(p, NULL, y, 3, "y");
    ok(ag_plot_save_svg(p, path) == AG_OK, "save");
    FILE *f = fopen(path, "rb");
    char buf[1 << 16];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    char *s = ag_plot_svg_string(p, NULL);
    ok(s && n > 0 && strcmp(buf, s) == 0, "the file holds the document (%zu bytes)", n);
    free(s);
    int entries = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) entries += e->d_name[0] != '.';
    if (d) closedir(d);
    ok(entries == 1, "no temporary file is left beside it");
    mode_t old = umask(077);
    remove(path);
    struct stat st;
    ok(ag_plot_save_svg(p, path) == AG_OK && stat(path, &st) == 0 && (st.st_mode & 0777) == 0600,
       "under umask 077 the file is 0600, as fopen would make it");
    umask(old);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no/such/dir.svg", dir);
    ok(ag_plot_save_svg(p, missing) == AG_ERR_IO && strstr(ag_last_error(), "plot_save_svg: ") &&
           strstr(ag_last_error(), "No such file or directory"),
       "a missing directory: %s", ag_last_error());
    ok(ag_plot_save_svg(p, NULL) == AG_ERR_ARG && strcmp(ag_last_error(), "plot_save_svg: path is NULL") == 0,
       "NULL path: %s", ag_last_error());
    ag_plot_free(p);
    remove(path);
    rmdir(dir);
}

/* ---- allocation failures ---------------------------------------------------------------- */

/* Builds and renders a figure using every kind of series; returns the first error. */
static ag_status build(void) {
    double x[4] = {1, 2, 3, 4}, y[4] = {4, 3, 1, 2}, img[4] = {0, 1, 1, 0}, lv[2] = {0.5, 2};
    ag_plot *p = ag_plot_new("t", "x", "y");
    if (!p) return ag_last_status();
    ag_plot_contour_options o = {.levels = lv, .nlevels = 2, .filled = true, .resolution = 8};
    ag_status st = ag_plot_line(p, x, y, 4, "a");
    if (!st) st = ag_plot_subplot(p, 2, 2, 1);
    if (!st) st = ag_plot_labels(p, "b", "bx", "by");
    if (!st) st = ag_plot_contour(p, circle, NULL, -1, 1, -1, 1, &o);
    if (!st) st = ag_plot_trajectory(p, x, y, 4, "c");
    for (int k = 0; !st && k < 9; k++) st = ag_plot_scatter(p, x, y, 4, "d"); /* grows the series array */
    if (!st) st = ag_plot_subplot(p, 2, 2, 2);
    if (!st) st = ag_plot_image(p, img, 2, 2, 0, 1);
    if (!st) st = ag_plot_subplot(p, 2, 2, 3);
    if (!st) st = ag_plot_image_grid(p, img, 2, 1, 2, 1, NAN, NAN); /* a failure at the second tile drops the first */
    char *s = st ? NULL : ag_plot_svg_string(p, NULL);
    if (!st && !s) st = ag_last_status();
    free(s);
    ag_plot_free(p);
    return st;
}

static void test_alloc_failures(void) {
    ag_set_allocator(failing_alloc, NULL);
    fail_at = -1;
    alloc_calls = live_blocks = 0;
    ag_status built = build();
    ok(built == AG_OK && live_blocks == 0, "the figure builds with a counting allocator (%ld allocations)", alloc_calls);
    long needed = alloc_calls;
    int nomem = 0, other = 0, leaks = 0;
    for (long k = 1; k <= needed; k++) {
        fail_at = k;
        alloc_calls = 0;
        ag_status st = build();
        nomem += st == AG_ERR_NOMEM;
        other += st != AG_ERR_NOMEM;
        if (live_blocks != 0) {
            diag("allocation %ld failing leaks %ld blocks", k, live_blocks);
            leaks++;
            live_blocks = 0;
        }
    }
    ag_set_allocator(NULL, NULL);
    ok(nomem == needed && other == 0, "each of the %ld allocations failing gives AG_ERR_NOMEM (%d did, %d did not)",
       needed, nomem, other);
    ok(leaks == 0, "and frees everything it had allocated (%d runs leaked)", leaks);
}

int main(void) {
    test_basic();
    test_empty();
    test_nonfinite();
    test_log();
    test_ticks();
    test_subplots();
    test_marching_squares();
    test_contour();
    test_image();
    test_image_grid();
    test_errors();
    test_save();
    test_alloc_failures();
    ok(ag_live_tensors() == 0, "no tensor is left alive");
    return tap_done();
}

/*
 * plot/contour.c - marching squares: the contour lines z = level and the
 * outline of the region z >= level of a function sampled on a grid, traced
 * as chains of points, for ag_plot_contour.
 *
 * A cell has corners a (i, j), b (i+1, j), c (i+1, j+1), d (i, j+1), walked
 * counter-clockwise; its sides k = 0..3 are ab, bc, cd, da.  A corner is
 * "above" when z >= level.  A side whose corners differ holds a crossing at
 * the linearly interpolated point.  The part of a cell above the level is
 * the polygon of its above corners and its crossings in walking order, so
 * every piece of contour inside a cell runs with the region on its left.  A
 * saddle cell (a and c on one side, b and d on the other) is decided by the
 * mean of its four corners: the corners on the mean's side are joined through
 * the middle of the cell, the others are cut off as triangles.
 *
 * Every point is a grid corner or a crossing on one grid side, so it has an
 * integer id and chains are joined exactly, without comparing coordinates.
 * The outline of the region is the union of the cells' polygon edges minus
 * the sides two finite cells share (each appears once in each direction), so
 * it splits into closed loops, holes running clockwise.
 */
#include <math.h>
#include <string.h>
#include "plot/internal.h"

typedef struct tracer {
    const double *z;
    int nx, ny;
    double level;
    int64_t ncorner, nhoriz, nvert; /* vertex ids: corners, crossings on x sides, on y sides */
    int64_t *head;                  /* per vertex: first unused outgoing edge, -1 if none */
    int64_t *next, *from, *to;      /* per edge */
    int64_t *indeg;                 /* per vertex (lines only) */
    int64_t ne, cap;
    bool failed;
} tracer;

static double zat(const tracer *t, int i, int j) { return t->z[(int64_t)j * t->nx + i]; }

static bool cell_finite(const tracer *t, int i, int j) {
    if (i < 0 || j < 0 || i + 1 >= t->nx || j + 1 >= t->ny) return false;
    return isfinite(zat(t, i, j)) && isfinite(zat(t, i + 1, j)) && isfinite(zat(t, i, j + 1)) &&
           isfinite(zat(t, i + 1, j + 1));
}

static void add_edge(tracer *t, int64_t u, int64_t v) {
    if (t->failed) return;
    if (t->ne == t->cap) {
        int64_t cap = t->cap ? 2 * t->cap : 1024;
        int64_t *a[3];
        for (int k = 0; k < 3; k++) a[k] = ag__alloc(sizeof(int64_t) * (size_t)cap);
        if (!a[0] || !a[1] || !a[2]) {
            for (int k = 0; k < 3; k++) ag__free(a[k]);
            t->failed = true;
            return;
        }
        int64_t *old[3] = {t->next, t->from, t->to};
        for (int k = 0; k < 3; k++) {
            if (t->ne) memcpy(a[k], old[k], sizeof(int64_t) * (size_t)t->ne);
            ag__free(old[k]);
        }
        t->next = a[0];
        t->from = a[1];
        t->to = a[2];
        t->cap = cap;
    }
    t->from[t->ne] = u;
    t->to[t->ne] = v;
    t->next[t->ne] = t->head[u];
    t->head[u] = t->ne++;
}

/* One vertex of a cell polygon: its id and the cell sides it lies on (bit k: side k). */
typedef struct vertex {
    int64_t id;
    unsigned sides;
} vertex;

/* Corner k of cell (i, j): on sides k and k - 1. */
static vertex corner(const tracer *t, int i, int j, int k) {
    static const int di[4] = {0, 1, 1, 0}, dj[4] = {0, 0, 1, 1};
    return (vertex){(int64_t)(j + dj[k]) * t->nx + i + di[k], (1u << k) | (1u << ((k + 3) & 3))};
}

/* The crossing on side k of cell (i, j). */
static vertex crossing(const tracer *t, int i, int j, int k) {
    int64_t id;
    switch (k) {
    case 0: id = t->ncorner + (int64_t)j * (t->nx - 1) + i; break;
    case 1: id = t->ncorner + t->nhoriz + (int64_t)j * t->nx + i + 1; break;
    case 2: id = t->ncorner + (int64_t)(j + 1) * (t->nx - 1) + i; break;
    default: id = t->ncorner + t->nhoriz + (int64_t)j * t->nx + i; break;
    }
    return (vertex){id, 1u << k};
}

/* Adds the edges of a cell polygon that belong to the result: contour pieces
 * always, pieces of a side only for the region and only where no finite
 * cell lies across that side. */
static void add_polygon(tracer *t, int i, int j, const vertex *v, int n, bool region) {
    static const int ni[4] = {0, 1, 0, -1}, nj[4] = {-1, 0, 1, 0};
    for (int k = 0; k < n; k++) {
        const vertex *u = &v[k], *w = &v[(k + 1) % n];
        unsigned common = u->sides & w->sides;
        if (!common) {
            add_edge(t, u->id, w->id);
            continue;
        }
        if (!region) continue;
        int s = common & 1 ? 0 : common & 2 ? 1 : common & 4 ? 2 : 3;
        if (!cell_finite(t, i + ni[s], j + nj[s])) add_edge(t, u->id, w->id);
    }
}

static void trace_cell(tracer *t, int i, int j, bool region) {
    if (!cell_finite(t, i, j)) return;
    double z[4] = {zat(t, i, j), zat(t, i + 1, j), zat(t, i + 1, j + 1), zat(t, i, j + 1)};
    bool above[4];
    int nabove = 0;
    for (int k = 0; k < 4; k++) nabove += above[k] = z[k] >= t->level;
    if (nabove == 0 || (nabove == 4 && !region)) return;
    vertex v[8];
    int n = 0;
    bool saddle = nabove == 2 && above[0] == above[2];
    if (saddle && (z[0] + z[1] + z[2] + z[3]) / 4 < t->level) {
        /* Two separate corners above: a triangle at each. */
        for (int k = 0; k < 4; k++)
            if (above[k]) {
                vertex tri[3] = {corner(t, i, j, k), crossing(t, i, j, k), crossing(t, i, j, (k + 3) & 3)};
                add_polygon(t, i, j, tri, 3, region);
            }
        return;
    }
    for (int k = 0; k < 4; k++) {
        if (above[k]) v[n++] = corner(t, i, j, k);
        if (above[k] != above[(k + 1) & 3]) v[n++] = crossing(t, i, j, k);
    }
    add_polygon(t, i, j, v, n, region);
}

/* Grid coordinates of vertex id; a crossing is interpolated from its lower grid point. */
static void position(const tracer *t, int64_t id, double *x, double *y) {
    if (id < t->ncorner) {
        *x = (double)(id % t->nx);
        *y = (double)(id / t->nx);
        return;
    }
    bool horiz = id < t->ncorner + t->nhoriz;
    int64_t k = id - t->ncorner - (horiz ? 0 : t->nhoriz), w = horiz ? t->nx - 1 : t->nx;
    int i = (int)(k % w), j = (int)(k / w);
    double z0 = zat(t, i, j), z1 = horiz ? zat(t, i + 1, j) : zat(t, i, j + 1);
    double f = (t->level - z0) / (z1 - z0);
    if (!(f >= 0)) f = 0;
    if (f > 1) f = 1;
    *x = i + (horiz ? f : 0);
    *y = j + (horiz ? 0 : f);
}

/* Follows unused edges from edge e, writing the points into xy; returns the
 * number of points.  Stops at a vertex without an unused outgoing edge or back
 * at the start. */
static int64_t walk(tracer *t, int64_t e, double *xy, bool *closed) {
    int64_t start = t->from[e], n = 0;
    position(t, start, &xy[0], &xy[1]);
    n = 1;
    *closed = false;
    for (;;) {
        t->head[t->from[e]] = t->next[e]; /* e was the first unused edge of its vertex */
        int64_t v = t->to[e];
        position(t, v, &xy[2 * n], &xy[2 * n + 1]);
        n++;
        if (v == start) {
            *closed = true;
            return n;
        }
        e = t->head[v];
        if (e < 0) return n;
    }
}

bool ag__contour_trace(const double *z, int nx, int ny, double level, bool region, ag__chain_fn emit, void *ctx) {
    if (nx < 2 || ny < 2) return true;
    tracer t = {.z = z, .nx = nx, .ny = ny, .level = level};
    t.ncorner = (int64_t)nx * ny;
    t.nhoriz = (int64_t)(nx - 1) * ny;
    t.nvert = (int64_t)nx * (ny - 1);
    int64_t nv = t.ncorner + t.nhoriz + t.nvert;
    t.head = ag__alloc(sizeof(int64_t) * (size_t)nv);
    if (!t.head) return false;
    for (int64_t v = 0; v < nv; v++) t.head[v] = -1;
    for (int j = 0; j + 1 < ny; j++)
        for (int i = 0; i + 1 < nx; i++) trace_cell(&t, i, j, region);
    double *xy = NULL;
    if (!t.failed && t.ne) {
        xy = ag__alloc(sizeof(double) * 2 * (size_t)(t.ne + 1));
        t.indeg = region ? NULL : ag__calloc(sizeof(int64_t) * (size_t)nv);
        t.failed = !xy || (!region && !t.indeg);
    }
    if (!t.failed && t.ne) {
        bool closed;
        if (!region)
            for (int64_t e = 0; e < t.ne; e++) t.indeg[t.to[e]]++;
        /* For lines, open chains first, from the vertices nothing leads into. */
        for (int pass = region ? 1 : 0; pass < 2; pass++)
            for (int64_t v = 0; v < nv; v++)
                while (t.head[v] >= 0 && (pass == 1 || t.indeg[v] == 0)) {
                    int64_t n = walk(&t, t.head[v], xy, &closed);
                    emit(ctx, xy, n, closed);
                }
    }
    ag__free(xy);
    ag__free(t.indeg);
    ag__free(t.head);
    ag__free(t.next);
    ag__free(t.from);
    ag__free(t.to);
    return !t.failed;
}

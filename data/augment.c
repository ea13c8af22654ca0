/*
 * data/augment.c - image augmentation (torchvision.transforms): a list of
 * transforms on float images [C, H, W], each drawing its random choices from
 * a private generator seeded per image, so that an item looks the same whichever
 * thread prepares it.  Most keep the image's size and work in place; Resize,
 * CenterCrop and RandomResizedCrop make an image of another size, known from
 * the input's size alone (ag__compose_out_size), so that a dataset's items keep
 * one shape.
 */
#include <math.h>
#include <string.h>
#include "data/internal.h"
#include "ops/resample.h"

typedef enum step_kind { CROP, HFLIP, AFFINE, NOISE, ERASE, NORMALIZE, RESIZE, CENTER_CROP, RESIZED_CROP, JITTER } step_kind;

typedef struct step {
    step_kind kind;
    double a[6];       /* the parameters, in the order of the adder's arguments */
    double *mean, *std; /* NORMALIZE */
    int channels;
    bool nearest;       /* RESIZE, RESIZED_CROP: nearest instead of bilinear */
} step;

/* The largest side a resizing transform makes (2^20) and the largest image (2^40 values). */
#define MAX_SIDE ((int64_t)1 << 20)
#define MAX_VALUES ((int64_t)1 << 40)

struct ag_compose {
    atomic_int refs;
    step *steps;
    int n;
};

ag_compose *ag_compose_new(void) {
    ag_compose *c = ag__calloc(sizeof *c);
    if (!c) return ag__fail_null(AG_ERR_NOMEM, "compose_new: out of memory");
    atomic_init(&c->refs, 1);
    return c;
}

ag_compose *ag__compose_hold(ag_compose *c) {
    if (c) atomic_fetch_add(&c->refs, 1);
    return c;
}

void ag_compose_free(ag_compose *c) {
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1) return;
    for (int k = 0; k < c->n; k++) ag__free(c->steps[k].mean);
    ag__free(c->steps);
    ag__free(c);
}

static step *add(ag_compose *c, step_kind kind) {
    step *s = ag__alloc_n(c->n + 1, sizeof *s);
    if (!s) return ag__fail_null(AG_ERR_NOMEM, "compose: out of memory");
    if (c->n) memcpy(s, c->steps, (size_t)c->n * sizeof *s);
    ag__free(c->steps);
    c->steps = s;
    s += c->n++;
    memset(s, 0, sizeof *s);
    s->kind = kind;
    return s;
}

static bool in(double v, double lo, double hi) { return v >= lo && v <= hi; }

ag_status ag_compose_random_crop(ag_compose *c, int padding) {
    if (!c || padding < 0 || padding > 4096) return ag__fail(AG_ERR_ARG, "compose_random_crop: NULL compose or padding %d outside [0, 4096]", padding);
    step *s = add(c, CROP);
    if (!s) return AG_ERR_NOMEM;
    s->a[0] = padding;
    return AG_OK;
}

ag_status ag_compose_hflip(ag_compose *c, double p) {
    if (!c || !in(p, 0, 1)) return ag__fail(AG_ERR_ARG, "compose_hflip: NULL compose or p %g outside [0, 1]", p);
    step *s = add(c, HFLIP);
    if (!s) return AG_ERR_NOMEM;
    s->a[0] = p;
    return AG_OK;
}

ag_status ag_compose_random_affine(ag_compose *c, double deg_lo, double deg_hi, double translate, double s_lo, double s_hi) {
    if (!c || !in(deg_lo, -360, 360) || !in(deg_hi, deg_lo, 360) || !in(translate, 0, 1) || !in(s_lo, 1e-3, 1e3) ||
        !in(s_hi, s_lo, 1e3))
        return ag__fail(AG_ERR_ARG, "compose_random_affine: NULL compose or degrees [%g, %g] (within [-360, 360]), translate %g "
                                    "(within [0, 1]), scale [%g, %g] (within [0.001, 1000])",
                        deg_lo, deg_hi, translate, s_lo, s_hi);
    step *s = add(c, AFFINE);
    if (!s) return AG_ERR_NOMEM;
    memcpy(s->a, (double[]){deg_lo, deg_hi, translate, s_lo, s_hi}, 5 * sizeof(double));
    return AG_OK;
}

ag_status ag_compose_gaussian_noise(ag_compose *c, double std) {
    if (!c || !in(std, 0, 1e30)) return ag__fail(AG_ERR_ARG, "compose_gaussian_noise: NULL compose or std %g < 0", std);
    step *s = add(c, NOISE);
    if (!s) return AG_ERR_NOMEM;
    s->a[0] = std;
    return AG_OK;
}

ag_status ag_compose_random_erasing(ag_compose *c, double p, double scale_lo, double scale_hi, double ratio_lo,
                                    double ratio_hi, double value) {
    if (!c || !in(p, 0, 1) || !in(scale_lo, 0, 1) || !in(scale_hi, scale_lo, 1) || !(ratio_lo > 0) || !in(ratio_hi, ratio_lo, 1e6) ||
        !isfinite(value))
        return ag__fail(AG_ERR_ARG, "compose_random_erasing: NULL compose or p %g, scale [%g, %g] (within [0, 1]), ratio [%g, %g] "
                                    "(positive), value %g",
                        p, scale_lo, scale_hi, ratio_lo, ratio_hi, value);
    step *s = add(c, ERASE);
    if (!s) return AG_ERR_NOMEM;
    memcpy(s->a, (double[]){p, scale_lo, scale_hi, ratio_lo, ratio_hi, value}, 6 * sizeof(double));
    return AG_OK;
}

ag_status ag_compose_normalize(ag_compose *c, const double *mean, const double *std, int channels) {
    if (!c || !mean || !std || channels < 1 || channels > 4096)
        return ag__fail(AG_ERR_ARG, "compose_normalize: NULL argument or %d channels", channels);
    for (int k = 0; k < channels; k++)
        if (!isfinite(mean[k]) || !(std[k] > 0) || !isfinite(std[k]))
            return ag__fail(AG_ERR_ARG, "compose_normalize: channel %d has mean %g, std %g (std must be > 0)", k, mean[k], std[k]);
    double *m = ag__alloc_n(channels, 2 * sizeof(double));
    if (!m) return ag__fail(AG_ERR_NOMEM, "compose_normalize: out of memory");
    step *s = add(c, NORMALIZE);
    if (!s) {
        ag__free(m);
        return AG_ERR_NOMEM;
    }
    memcpy(m, mean, (size_t)channels * sizeof(double));
    memcpy(m + channels, std, (size_t)channels * sizeof(double));
    s->mean = m;
    s->std = m + channels;
    s->channels = channels;
    return AG_OK;
}

static bool side_ok(int64_t v) { return v >= 1 && v <= MAX_SIDE; }

ag_status ag_compose_resize(ag_compose *c, int64_t height, int64_t width, bool nearest) {
    if (!c || !side_ok(height) || !side_ok(width))
        return ag__fail(AG_ERR_ARG, "compose_resize: NULL compose or size %lld x %lld (each side in [1, 2^20])", (long long)height,
                        (long long)width);
    step *s = add(c, RESIZE);
    if (!s) return AG_ERR_NOMEM;
    s->a[0] = (double)height, s->a[1] = (double)width;
    s->nearest = nearest;
    return AG_OK;
}

ag_status ag_compose_resize_shorter(ag_compose *c, int64_t size, bool nearest) {
    if (!c || !side_ok(size))
        return ag__fail(AG_ERR_ARG, "compose_resize_shorter: NULL compose or size %lld (in [1, 2^20])", (long long)size);
    step *s = add(c, RESIZE);
    if (!s) return AG_ERR_NOMEM;
    s->a[0] = (double)size, s->a[2] = 1;
    s->nearest = nearest;
    return AG_OK;
}

ag_status ag_compose_center_crop(ag_compose *c, int64_t height, int64_t width) {
    if (!c || !side_ok(height) || !side_ok(width))
        return ag__fail(AG_ERR_ARG, "compose_center_crop: NULL compose or size %lld x %lld (each side in [1, 2^20])",
                        (long long)height, (long long)width);
    step *s = add(c, CENTER_CROP);
    if (!s) return AG_ERR_NOMEM;
    s->a[0] = (double)height, s->a[1] = (double)width;
    return AG_OK;
}

ag_status ag_compose_random_resized_crop(ag_compose *c, int64_t height, int64_t width, double scale_lo, double scale_hi,
                                         double ratio_lo, double ratio_hi, bool nearest) {
    if (!c || !side_ok(height) || !side_ok(width) || !in(scale_lo, 0, 1) || !in(scale_hi, scale_lo, 1) || !(scale_hi > 0) ||
        !in(ratio_lo, 1e-6, 1e6) || !in(ratio_hi, ratio_lo, 1e6))
        return ag__fail(AG_ERR_ARG, "compose_random_resized_crop: NULL compose or size %lld x %lld (each side in [1, 2^20]), "
                                    "scale [%g, %g] (within [0, 1], not [0, 0]), ratio [%g, %g] (within [1e-6, 1e6])",
                        (long long)height, (long long)width, scale_lo, scale_hi, ratio_lo, ratio_hi);
    step *s = add(c, RESIZED_CROP);
    if (!s) return AG_ERR_NOMEM;
    memcpy(s->a, (double[]){(double)height, (double)width, scale_lo, scale_hi, ratio_lo, ratio_hi}, 6 * sizeof(double));
    s->nearest = nearest;
    return AG_OK;
}

ag_status ag_compose_color_jitter(ag_compose *c, double brightness, double contrast) {
    if (!c || !in(brightness, 0, 1e6) || !in(contrast, 0, 1e6))
        return ag__fail(AG_ERR_ARG, "compose_color_jitter: NULL compose or brightness %g, contrast %g (each >= 0)", brightness, contrast);
    step *s = add(c, JITTER);
    if (!s) return AG_ERR_NOMEM;
    s->a[0] = brightness, s->a[1] = contrast;
    return AG_OK;
}

/* The size step s makes of an H x W image. */
static void step_size(const step *s, int64_t H, int64_t W, int64_t *oh, int64_t *ow) {
    *oh = H, *ow = W;
    if (s->kind == RESIZE && s->a[2]) { /* torchvision's _compute_resized_output_size for size=int */
        int64_t size = (int64_t)s->a[0], shorter = H < W ? H : W, longer = H < W ? W : H;
        int64_t other = shorter > 0 ? (int64_t)((double)size * (double)longer / (double)shorter) : 0;
        if (W <= H) *ow = size, *oh = other;
        else *oh = size, *ow = other;
    } else if (s->kind == RESIZE || s->kind == CENTER_CROP || s->kind == RESIZED_CROP) {
        *oh = (int64_t)s->a[0], *ow = (int64_t)s->a[1];
    }
}

static bool resizes(step_kind k) { return k == RESIZE || k == CENTER_CROP || k == RESIZED_CROP; }

ag_status ag__compose_out_size(const char *op, const ag_compose *c, int64_t C, int64_t H, int64_t W, int64_t *oh, int64_t *ow) {
    int64_t h = H, w = W, n;
    for (int k = 0; k < c->n; k++) {
        const step *s = &c->steps[k];
        if (resizes(s->kind) && (h == 0 || w == 0))
            return ag__fail(AG_ERR_SHAPE, "%s: transform %d resizes an empty %lld x %lld image", op, k, (long long)h, (long long)w);
        step_size(s, h, w, &h, &w);
        if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE || ag__mul_overflow(h, w, &n) || ag__mul_overflow(n, C, &n) ||
            n > MAX_VALUES)
            return ag__fail(AG_ERR_SHAPE, "%s: transform %d makes a %lld x %lld image of %lld channels from %lld x %lld (sides must "
                                          "be in [1, 2^20])",
                            op, k, (long long)h, (long long)w, (long long)C, (long long)H, (long long)W);
    }
    *oh = h, *ow = w;
    return AG_OK;
}

ag_status ag__compose_check(const char *op, const ag_compose *c, int64_t C) {
    for (int k = 0; k < c->n; k++)
        if (c->steps[k].kind == NORMALIZE && c->steps[k].channels > 1 && c->steps[k].channels != C)
            return ag__fail(AG_ERR_SHAPE, "%s: a Normalize of %d channels for images of %lld", op, c->steps[k].channels, (long long)C);
    return AG_OK;
}

/* ---- the transforms, on one image p [C, H, W] with scratch room tmp of the same size ---- */
static double uniform(ag__gen *g, double lo, double hi) { return lo + (hi - lo) * ag__gen_uniform(g); }

/* RandomCrop with zero padding: out(y, x) = p(y + top - pad, x + left - pad), 0 outside;
 * each row is one copy between two runs of zeros. */
static void crop(const step *s, ag__gen *g, float *p, float *tmp, int64_t C, int64_t H, int64_t W) {
    int64_t pad = (int64_t)s->a[0];
    if (pad == 0) return;
    int64_t top = (int64_t)ag__gen_below(g, (uint64_t)(2 * pad + 1)), left = (int64_t)ag__gen_below(g, (uint64_t)(2 * pad + 1));
    int64_t dx = left - pad, x0 = dx < 0 ? -dx : 0, x1 = dx > 0 ? W - dx : W; /* columns x0 <= x < x1 come from inside */
    if (x0 > W) x0 = W;
    if (x1 < x0) x1 = x0;
    for (int64_t c = 0; c < C; c++)
        for (int64_t y = 0; y < H; y++) {
            float *row = tmp + (c * H + y) * W;
            int64_t sy = y + top - pad;
            if (sy < 0 || sy >= H || x1 == x0) {
                memset(row, 0, (size_t)W * sizeof(float));
                continue;
            }
            memset(row, 0, (size_t)x0 * sizeof(float));
            memcpy(row + x0, p + (c * H + sy) * W + x0 + dx, (size_t)(x1 - x0) * sizeof(float));
            memset(row + x1, 0, (size_t)(W - x1) * sizeof(float));
        }
    memcpy(p, tmp, (size_t)(C * H * W) * sizeof(float));
}

static void hflip(const step *s, ag__gen *g, float *p, int64_t C, int64_t H, int64_t W) {
    if (!(ag__gen_uniform(g) < s->a[0])) return;
    for (int64_t r = 0; r < C * H; r++)
        for (int64_t x = 0; x < W / 2; x++) {
            float t = p[r * W + x];
            p[r * W + x] = p[r * W + W - 1 - x];
            p[r * W + W - 1 - x] = t;
        }
}

/* Columns of an affine warp handled per pass, their terms in a table on the stack. */
#define AFFINE_COLS 256

/* The nearest source pixels of output rows [0, H) and columns [x0, x0 + n) of an
 * affine warp: inverse map (u, v) = ((x + 1/2 - W/2 - tx) / zoom, (y + 1/2 - H/2 - ty)
 * / zoom), source (floor(u cos - v sin + W/2), floor(u sin + v cos + H/2)).  The
 * column terms u cos, u sin come from the table, the row terms once per row, and
 * the sums are made in the order the formula reads, so every pixel is the one the
 * per-pixel formula picks.  floor(f) lies in [0, W) exactly when f does, and is
 * then (int64_t)f. */
static void affine_cols(const float *p, float *tmp, int64_t C, int64_t H, int64_t W, int64_t x0, int64_t n, const double *ucos,
                        const double *usin, double ty, double zoom, double ca, double sa) {
    double hw = (double)W / 2, hh = (double)H / 2;
    for (int64_t y = 0; y < H; y++) {
        double v = ((double)y + 0.5 - hh - ty) / zoom, vs = v * sa, vc = v * ca;
        for (int64_t i = 0; i < n; i++) {
            double fx = ucos[i] - vs + hw - 0.5 + 0.5, fy = usin[i] + vc + hh - 0.5 + 0.5;
            bool inside = fx >= 0 && fx < (double)W && fy >= 0 && fy < (double)H;
            int64_t at = inside ? (int64_t)fy * W + (int64_t)fx : 0;
            for (int64_t c = 0; c < C; c++) tmp[(c * H + y) * W + x0 + i] = inside ? p[c * H * W + at] : 0.0f;
        }
    }
}

/* RandomAffine (nearest, fill 0): angle, shift (rounded) and zoom drawn, then the warp. */
static void affine(const step *s, ag__gen *g, float *p, float *tmp, int64_t C, int64_t H, int64_t W) {
    double angle = uniform(g, s->a[0], s->a[1]) * 3.14159265358979323846 / 180;
    double tx = round(uniform(g, -s->a[2] * (double)W, s->a[2] * (double)W));
    double ty = round(uniform(g, -s->a[2] * (double)H, s->a[2] * (double)H));
    double zoom = uniform(g, s->a[3], s->a[4]), ca = cos(angle), sa = sin(angle);
    double ucos[AFFINE_COLS], usin[AFFINE_COLS];
    for (int64_t x0 = 0; x0 < W; x0 += AFFINE_COLS) {
        int64_t n = W - x0 < AFFINE_COLS ? W - x0 : AFFINE_COLS;
        for (int64_t i = 0; i < n; i++) {
            double u = ((double)(x0 + i) + 0.5 - (double)W / 2 - tx) / zoom;
            ucos[i] = u * ca;
            usin[i] = u * sa;
        }
        affine_cols(p, tmp, C, H, W, x0, n, ucos, usin, ty, zoom, ca, sa);
    }
    memcpy(p, tmp, (size_t)(C * H * W) * sizeof(float));
}

static void erase(const step *s, ag__gen *g, float *p, int64_t C, int64_t H, int64_t W) {
    if (!(ag__gen_uniform(g) < s->a[0])) return;
    double area = (double)H * (double)W, lr0 = log(s->a[3]), lr1 = log(s->a[4]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * uniform(g, s->a[1], s->a[2]), ratio = exp(uniform(g, lr0, lr1));
        int64_t h = (int64_t)round(sqrt(target * ratio)), w = (int64_t)round(sqrt(target / ratio));
        if (!(h < H && w < W)) continue;
        int64_t top = (int64_t)ag__gen_below(g, (uint64_t)(H - h + 1)), left = (int64_t)ag__gen_below(g, (uint64_t)(W - w + 1));
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = top; y < top + h; y++)
                for (int64_t x = left; x < left + w; x++) p[(c * H + y) * W + x] = (float)s->a[5];
        return;
    }
}

/* Python's round (halves to even, as rint in the default rounding mode) of v. */
static int64_t round_even(double v) { return (int64_t)nearbyint(v); }

/* out [C, h, w] = the h x w window of p [C, H, W] at (top, left), 0 outside p. */
static void window(const float *p, int64_t C, int64_t H, int64_t W, int64_t top, int64_t left, int64_t h, int64_t w, float *out) {
    for (int64_t c = 0; c < C; c++)
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++) {
                int64_t sy = y + top, sx = x + left;
                out[(c * h + y) * w + x] = sy >= 0 && sy < H && sx >= 0 && sx < W ? p[(c * H + sy) * W + sx] : 0.0f;
            }
}

/* CenterCrop (torchvision): zeros padded around a smaller image, offsets round((H - h) / 2) otherwise. */
static void center_crop(const float *p, int64_t C, int64_t H, int64_t W, int64_t h, int64_t w, float *out) {
    int64_t top = h > H ? -((h - H) / 2) : round_even((double)(H - h) / 2);
    int64_t left = w > W ? -((w - W) / 2) : round_even((double)(W - w) / 2);
    window(p, C, H, W, top, left, h, w, out);
}

/* RandomResizedCrop.get_params (torchvision): 10 tries of an area and an aspect,
 * then the centred crop of the nearest allowed aspect.  Writes the window. */
static void resized_crop_window(const step *s, ag__gen *g, int64_t H, int64_t W, int64_t *top, int64_t *left, int64_t *h, int64_t *w) {
    double area = (double)H * (double)W, lr0 = log(s->a[4]), lr1 = log(s->a[5]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * uniform(g, s->a[2], s->a[3]), ratio = exp(uniform(g, lr0, lr1));
        int64_t cw = round_even(sqrt(target * ratio)), ch = round_even(sqrt(target / ratio));
        if (cw > 0 && cw <= W && ch > 0 && ch <= H) {
            *top = (int64_t)ag__gen_below(g, (uint64_t)(H - ch + 1));
            *left = (int64_t)ag__gen_below(g, (uint64_t)(W - cw + 1));
            *h = ch, *w = cw;
            return;
        }
    }
    double in_ratio = (double)W / (double)H;
    if (in_ratio < s->a[4]) *w = W, *h = round_even((double)W / s->a[4]);
    else if (in_ratio > s->a[5]) *h = H, *w = round_even((double)H * s->a[5]);
    else *w = W, *h = H;
    if (*h < 1) *h = 1;
    if (*w < 1) *w = 1;
    *top = (H - *h) / 2, *left = (W - *w) / 2;
}

/* ColorJitter(brightness, contrast) for images in [0, 1]: the two in an order drawn
 * first, factors b, c uniform in [max(0, 1 - x), 1 + x]; brightness p = clamp(b p),
 * contrast p = clamp(c p + (1 - c) m), m the mean of the grey image (0.2989 r +
 * 0.587 g + 0.114 b for 3 channels), of the whole image for other channel counts. */
static void jitter(const step *s, ag__gen *g, float *p, int64_t C, int64_t H, int64_t W) {
    bool contrast_first = ag__gen_uniform(g) < 0.5;
    double fb = uniform(g, fmax(0, 1 - s->a[0]), 1 + s->a[0]), fc = uniform(g, fmax(0, 1 - s->a[1]), 1 + s->a[1]);
    int64_t n = C * H * W, plane = H * W;
    for (int pass = 0; pass < 2; pass++) {
        bool contrast = (pass == 0) == contrast_first;
        if (contrast && s->a[1] > 0) {
            double m = 0; /* the mean of the grey image for RGB, of every value otherwise */
            if (C == 3)
                for (int64_t i = 0; i < plane; i++) m += 0.2989 * p[i] + 0.587 * p[plane + i] + 0.114 * p[2 * plane + i];
            else
                for (int64_t i = 0; i < n; i++) m += p[i];
            m = n ? m / (double)(C == 3 ? plane : n) : 0;
            for (int64_t i = 0; i < n; i++) p[i] = (float)fmin(fmax(fc * p[i] + (1 - fc) * m, 0), 1);
        } else if (!contrast && s->a[0] > 0) {
            for (int64_t i = 0; i < n; i++) p[i] = (float)fmin(fmax(fb * p[i], 0), 1);
        }
    }
}

/* One step that keeps the size, on p [C, H, W] in place, tmp scratch of the same size (NULL if unneeded). */
static void run_in_place(const step *s, ag__gen *g, float *p, float *tmp, int64_t C, int64_t H, int64_t W) {
    int64_t n = C * H * W;
    switch (s->kind) {
    case CROP: crop(s, g, p, tmp, C, H, W); break;
    case HFLIP: hflip(s, g, p, C, H, W); break;
    case AFFINE: affine(s, g, p, tmp, C, H, W); break;
    case NOISE: { /* p += std·z: the vectorised counter-based normals (core/random.c), one draw of g keying each 512 pixels */
        enum { CHUNK = 512 };
        float z[CHUNK];
        for (int64_t i = 0; i < n; i += CHUNK) {
            const int64_t m = n - i < CHUNK ? n - i : CHUNK;
            ag__rand_fill_keyed(z, AG_F32, m, ag__gen_next(g), true, 0, s->a[0]);
            for (int64_t k = 0; k < m; k++) p[i + k] += z[k];
        }
        break;
    }
    case ERASE: erase(s, g, p, C, H, W); break;
    case NORMALIZE:
        for (int64_t ch = 0; ch < C; ch++) {
            int k2 = s->channels == 1 ? 0 : (int)ch;
            double m = s->mean[k2], sd = s->std[k2];
            for (int64_t i = ch * H * W; i < (ch + 1) * H * W; i++) p[i] = (float)(((double)p[i] - m) / sd);
        }
        break;
    case JITTER: jitter(s, g, p, C, H, W); break;
    case RESIZE: case CENTER_CROP: case RESIZED_CROP: break; /* not in place */
    }
}

/* One step that changes the size: p [C, H, W] into out [C, oh, ow]. */
static ag_status run_resizing(const step *s, ag__gen *g, const float *p, int64_t C, int64_t H, int64_t W, float *out, int64_t oh,
                              int64_t ow) {
    if (s->kind == CENTER_CROP) {
        center_crop(p, C, H, W, oh, ow, out);
        return AG_OK;
    }
    if (s->kind == RESIZE) return ag__resample_f32(C, H, W, oh, ow, s->nearest, p, out);
    int64_t top, left, h, w;
    resized_crop_window(s, g, H, W, &top, &left, &h, &w);
    float *cut = ag__alloc_n(C * h * w, sizeof(float));
    if (!cut) return AG_ERR_NOMEM;
    window(p, C, H, W, top, left, h, w, cut);
    ag_status st = ag__resample_f32(C, h, w, oh, ow, s->nearest, cut, out);
    ag__free(cut);
    return st;
}

ag_status ag__compose_run(const ag_compose *c, const float *src, float *dst, int64_t C, int64_t H, int64_t W, uint64_t seed) {
    ag__gen g;
    ag__gen_seed(&g, seed);
    /* cur [C, H, W]: the image so far; own: whether cur is a buffer of ours (else src) */
    const float *cur = src;
    float *own = NULL, *tmp = NULL;
    bool any_resize = false;
    for (int k = 0; k < c->n; k++) any_resize |= resizes(c->steps[k].kind);
    if (!any_resize) { /* the same size throughout: in place in dst */
        int64_t n = C * H * W;
        if (src != dst && n) memmove(dst, src, (size_t)n * sizeof(float));
        for (int k = 0; k < c->n; k++) {
            const step *s = &c->steps[k];
            if ((s->kind == CROP || s->kind == AFFINE) && !tmp && n > 0 && !(tmp = ag__alloc_n(n, sizeof(float))))
                return AG_ERR_NOMEM;
            run_in_place(s, &g, dst, tmp, C, H, W);
        }
        ag__free(tmp);
        return AG_OK;
    }
    ag_status st = AG_OK;
    for (int k = 0; !st && k < c->n; k++) {
        const step *s = &c->steps[k];
        int64_t oh, ow;
        step_size(s, H, W, &oh, &ow);
        if (resizes(s->kind)) {
            float *next = ag__alloc_n(C * oh * ow > 0 ? C * oh * ow : 1, sizeof(float));
            st = next ? run_resizing(s, &g, cur, C, H, W, next, oh, ow) : AG_ERR_NOMEM;
            ag__free(own), ag__free(tmp);
            tmp = NULL;
            cur = own = next;
            H = oh, W = ow;
            continue;
        }
        int64_t n = C * H * W;
        if (!own) { /* the first step to change pixels works on a copy of src */
            if (!(own = ag__alloc_n(n ? n : 1, sizeof(float)))) st = AG_ERR_NOMEM;
            else if (n) memcpy(own, src, (size_t)n * sizeof(float));
            cur = own;
        }
        if (!st && (s->kind == CROP || s->kind == AFFINE) && !tmp && n > 0 && !(tmp = ag__alloc_n(n, sizeof(float))))
            st = AG_ERR_NOMEM;
        if (!st) run_in_place(s, &g, own, tmp, C, H, W);
    }
    if (!st && C * H * W > 0) memmove(dst, cur, (size_t)(C * H * W) * sizeof(float));
    ag__free(own);
    ag__free(tmp);
    return st;
}

/* Checks img for op: float32 [C, H, W] or [H, W], contiguous; its sizes into C, H, W. */
static ag_status check_image(const char *op, const ag_compose *c, const ag_tensor *img, int64_t *C, int64_t *H, int64_t *W) {
    if (!c || !img) return ag__fail(AG_ERR_ARG, "%s: NULL compose or image", op);
    char s[AG_SHAPE_STR];
    if (img->dtype != AG_F32)
        return ag__fail(AG_ERR_DTYPE, "%s: the image is %s, transforms need float32 (ag_to_dtype, or ag_rescale for bytes)", op,
                        ag_dtype_name(img->dtype));
    if ((img->ndim != 2 && img->ndim != 3) || !ag__contig(img))
        return ag__fail(AG_ERR_SHAPE, "%s: the image %s must be a contiguous [C, H, W] or [H, W]", op, ag__tshape(s, img));
    *C = img->ndim == 3 ? img->shape[0] : 1, *H = img->shape[img->ndim - 2], *W = img->shape[img->ndim - 1];
    return ag__compose_check(op, c, *C);
}

ag_status ag_compose_apply(const ag_compose *c, ag_tensor *img, uint64_t seed) {
    static const char *op = "compose_apply";
    AG_CHECK_HANDLES(AG_ERR_ARG, op, img);
    int64_t C = 0, H = 0, W = 0, oh = 0, ow = 0;
    ag_status st = check_image(op, c, img, &C, &H, &W);
    if (!st) st = ag__compose_out_size(op, c, C, H, W, &oh, &ow);
    if (st) return st;
    char s[AG_SHAPE_STR];
    if (oh != H || ow != W)
        return ag__fail(AG_ERR_SHAPE, "compose_apply: the transforms make a %lld x %lld image of the image %s, which cannot hold "
                                      "it in place; use ag_compose_call",
                        (long long)oh, (long long)ow, ag__tshape(s, img));
    st = ag__check_inference_write(op, img);
    if (st) return st;
    if (ag__compose_run(c, (float *)ag__ptr(img), (float *)ag__ptr(img), C, H, W, seed))
        return ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
    ag__bump_version(img);
    return AG_OK;
}

ag_tensor *ag_compose_call(const ag_compose *c, const ag_tensor *img, uint64_t seed) {
    static const char *op = "compose_call";
    AG_CHECK_HANDLES(NULL, op, img);
    int64_t C = 0, H = 0, W = 0, oh = 0, ow = 0;
    if (check_image(op, c, img, &C, &H, &W) || ag__compose_out_size(op, c, C, H, W, &oh, &ow)) return NULL;
    int64_t shape[3] = {C, oh, ow};
    ag_tensor *out = img->ndim == 3 ? ag__new_unowned(AG_F32, 3, shape, false) : ag__new_unowned(AG_F32, 2, shape + 1, false);
    if (!out || ag__compose_run(c, (const float *)ag__ptr(img), (float *)ag__ptr(out), C, H, W, seed)) {
        ag_release(out);
        return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory", op);
    }
    return ag__own(out);
}

/*
 * data/augment.c - image augmentation (torchvision.transforms): a list of
 * transforms on float images [C, H, W], each drawing its random choices from
 * a private generator seeded per image, so that an item looks the same whichever
 * thread prepares it.
 */
#include <math.h>
#include <string.h>
#include "data/internal.h"

typedef enum step_kind { CROP, HFLIP, AFFINE, NOISE, ERASE, NORMALIZE } step_kind;

typedef struct step {
    step_kind kind;
    double a[6];       /* the parameters, in the order of the adder's arguments */
    double *mean, *std; /* NORMALIZE */
    int channels;
} step;

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

ag_status ag__compose_check(const char *op, const ag_compose *c, int64_t C) {
    for (int k = 0; k < c->n; k++)
        if (c->steps[k].kind == NORMALIZE && c->steps[k].channels > 1 && c->steps[k].channels != C)
            return ag__fail(AG_ERR_SHAPE, "%s: a Normalize of %d channels for images of %lld", op, c->steps[k].channels, (long long)C);
    return AG_OK;
}

/* ---- the transforms, on one image p [C, H, W] with scratch room tmp of the same size ---- */
static double uniform(ag__gen *g, double lo, double hi) { return lo + (hi - lo) * ag__gen_uniform(g); }

static void crop(const step *s, ag__gen *g, float *p, float *tmp, int64_t C, int64_t H, int64_t W) {
    int64_t pad = (int64_t)s->a[0];
    if (pad == 0) return;
    int64_t top = (int64_t)ag__gen_below(g, (uint64_t)(2 * pad + 1)), left = (int64_t)ag__gen_below(g, (uint64_t)(2 * pad + 1));
    for (int64_t c = 0; c < C; c++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) {
                int64_t sy = y + top - pad, sx = x + left - pad;
                tmp[(c * H + y) * W + x] = sy >= 0 && sy < H && sx >= 0 && sx < W ? p[(c * H + sy) * W + sx] : 0.0f;
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

static void affine(const step *s, ag__gen *g, float *p, float *tmp, int64_t C, int64_t H, int64_t W) {
    double angle = uniform(g, s->a[0], s->a[1]) * 3.14159265358979323846 / 180;
    double tx = round(uniform(g, -s->a[2] * (double)W, s->a[2] * (double)W));
    double ty = round(uniform(g, -s->a[2] * (double)H, s->a[2] * (double)H));
    double zoom = uniform(g, s->a[3], s->a[4]), ca = cos(angle), sa = sin(angle);
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
            double u = ((double)x + 0.5 - (double)W / 2 - tx) / zoom, v = ((double)y + 0.5 - (double)H / 2 - ty) / zoom;
            double sx = floor(u * ca - v * sa + (double)W / 2 - 0.5 + 0.5), sy = floor(u * sa + v * ca + (double)H / 2 - 0.5 + 0.5);
            bool inside = sx >= 0 && sx < (double)W && sy >= 0 && sy < (double)H;
            for (int64_t c = 0; c < C; c++)
                tmp[(c * H + y) * W + x] = inside ? p[(c * H + (int64_t)sy) * W + (int64_t)sx] : 0.0f;
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

void ag__compose_run(const ag_compose *c, float *p, int64_t C, int64_t H, int64_t W, uint64_t seed) {
    ag__gen g;
    ag__gen_seed(&g, seed);
    int64_t n = C * H * W;
    float *tmp = NULL;
    for (int k = 0; k < c->n; k++) {
        const step *s = &c->steps[k];
        if ((s->kind == CROP || s->kind == AFFINE) && !tmp && n > 0) {
            tmp = ag__alloc_n(n, sizeof(float));
            if (!tmp) continue; /* out of memory: this geometric step is skipped */
        }
        switch (s->kind) {
        case CROP: if (tmp) crop(s, &g, p, tmp, C, H, W); break;
        case HFLIP: hflip(s, &g, p, C, H, W); break;
        case AFFINE: if (tmp) affine(s, &g, p, tmp, C, H, W); break;
        case NOISE:
            for (int64_t i = 0; i < n; i++) p[i] += (float)(s->a[0] * ag__gen_normal(&g));
            break;
        case ERASE: erase(s, &g, p, C, H, W); break;
        case NORMALIZE:
            for (int64_t ch = 0; ch < C; ch++) {
                int k2 = s->channels == 1 ? 0 : (int)ch;
                double m = s->mean[k2], sd = s->std[k2];
                for (int64_t i = ch * H * W; i < (ch + 1) * H * W; i++) p[i] = (float)(((double)p[i] - m) / sd);
            }
            break;
        }
    }
    ag__free(tmp);
}

ag_status ag_compose_apply(const ag_compose *c, ag_tensor *img, uint64_t seed) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "compose_apply", img);
    if (!c || !img) return ag__fail(AG_ERR_ARG, "compose_apply: NULL compose or image");
    char s[AG_SHAPE_STR];
    if (img->dtype != AG_F32) return ag__fail(AG_ERR_DTYPE, "compose_apply: the image is %s, transforms need float32", ag_dtype_name(img->dtype));
    if ((img->ndim != 2 && img->ndim != 3) || !ag__contig(img))
        return ag__fail(AG_ERR_SHAPE, "compose_apply: the image %s must be a contiguous [C, H, W] or [H, W]", ag__tshape(s, img));
    int64_t C = img->ndim == 3 ? img->shape[0] : 1, H = img->shape[img->ndim - 2], W = img->shape[img->ndim - 1];
    ag_status st = ag__compose_check("compose_apply", c, C);
    if (st) return st;
    st = ag__check_inference_write("compose_apply", img);
    if (st) return st;
    ag__compose_run(c, (float *)ag__ptr(img), C, H, W, seed);
    ag__bump_version(img);
    return AG_OK;
}

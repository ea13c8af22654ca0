/*
 * data/png.c - PNG files through libpng's simplified API (png_image): any bit
 * depth, palette, grey or colour, alpha, interlacing, converted by libpng to the
 * channels asked for, 8 bits each; and folders of them and of JPEG files
 * (data/jpeg.c), one sub-folder per class (ImageFolder), whose images are read
 * when an item is fetched.
 */
#include <dirent.h>
#include <png.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include "data/internal.h"
#include "ops/resample.h"

/* libpng's format for channels (0: the file's own). */
static png_uint_32 format_of(int channels, png_uint_32 file_format) {
    switch (channels) {
    case 1: return PNG_FORMAT_GRAY;
    case 3: return PNG_FORMAT_RGB;
    case 4: return PNG_FORMAT_RGBA;
    default: return file_format & (PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA); /* 8-bit, no colour map */
    }
}

/* Channels of each PNG colour type (IHDR byte 25): grey, -, RGB, palette, grey + alpha, -, RGBA. */
static const int type_channels[7] = {1, 0, 3, 1, 2, 0, 4};

/* Whether the IHDR of buf (read by libpng already) claims more raw image bytes than
 * its n bytes could hold: deflate expands at most 1032 times, so such a file is
 * truncated or forged, and is refused before a buffer of its claimed size is made. */
static bool claims_too_much(const unsigned char *buf, size_t n, png_uint_32 width, png_uint_32 height) {
    if (n < 26 || buf[25] > 6) return false; /* libpng accepted it: cannot happen */
    uint64_t bits = (uint64_t)width * buf[24] * (uint64_t)type_channels[buf[25]];
    uint64_t raw = (uint64_t)height * ((bits + 7) / 8); /* without the filter bytes: a lower bound */
    return raw / 1032 > n;
}

ag_tensor *ag__png_decode(const unsigned char *buf, size_t n, const char *name, int channels, int64_t max_pixels) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, buf, n)) {
        ag__fail(AG_ERR_FORMAT, "load_png: %s: %s", name, img.message);
        png_image_free(&img);
        return NULL;
    }
    if ((uint64_t)img.width * img.height > (uint64_t)max_pixels || claims_too_much(buf, n, img.width, img.height)) {
        ag__fail(AG_ERR_FORMAT, "load_png: %s: a %lu x %lu image %s", name, (unsigned long)img.height, (unsigned long)img.width,
                 (uint64_t)img.width * img.height > (uint64_t)max_pixels ? "has more pixels than the limit (a decompression bomb?)"
                                                                          : "cannot fit in a file of this size (truncated?)");
        png_image_free(&img);
        return NULL;
    }
    /* 16-bit files are read as they are (libpng's "linear" format, no gamma change) and reduced to 8 bits here */
    bool wide = (img.format & PNG_FORMAT_FLAG_LINEAR) != 0;
    img.format = format_of(channels, img.format) | (wide ? PNG_FORMAT_FLAG_LINEAR : 0);
    int64_t C = (int64_t)PNG_IMAGE_SAMPLE_CHANNELS(img.format), H = img.height, W = img.width;
    size_t bytes = PNG_IMAGE_SIZE(img);
    unsigned char *hwc = ag__alloc_n((int64_t)bytes ? (int64_t)bytes : 1, 1);
    ag_tensor *t = hwc ? ag__new_unowned(AG_U8, 3, (int64_t[]){C, H, W}, false) : NULL;
    if (!t) {
        png_image_free(&img);
        ag__free(hwc);
        return ag__fail_null(AG_ERR_NOMEM, "load_png: %s: out of memory for a %lld x %lld image", name, (long long)H, (long long)W);
    }
    if (!png_image_finish_read(&img, NULL, hwc, 0, NULL)) {
        ag__fail(AG_ERR_FORMAT, "load_png: %s: %s", name, img.message);
        png_image_free(&img);
        ag__free(hwc);
        ag_release(t);
        return NULL;
    }
    uint8_t *out = (uint8_t *)ag__ptr(t); /* interleaved [H, W, C] to planes [C, H, W] */
    const uint16_t *hwc16 = (const uint16_t *)(void *)hwc;
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < H * W; i++)
            out[c * H * W + i] = wide ? (uint8_t)(((uint32_t)hwc16[i * C + c] * 255 + 32767) / 65535) : hwc[i * C + c];
    ag__free(hwc);
    return t;
}

/* Whether buf starts as a PNG / a JPEG file does. */
static bool is_png(const unsigned char *buf, size_t n) { return n >= 8 && memcmp(buf, "\x89PNG\r\n\x1a\n", 8) == 0; }
static bool is_jpeg(const unsigned char *buf, size_t n) { return n >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff; }

/* Reads path into a new unowned uint8 tensor [C, H, W]: kind 'p' (PNG), 'j' (JPEG)
 * or 0 (either, told apart by their first bytes). */
static ag_tensor *read_image(const char *op, const char *path, int channels, char kind) {
    unsigned char *buf;
    size_t n;
    if (ag__read_file(op, path, &buf, &n)) return NULL;
    ag_tensor *t;
    if (kind == 'p' || (kind == 0 && is_png(buf, n))) t = ag__png_decode(buf, n, path, channels, AG__MAX_IMAGE_PIXELS);
    else if (kind == 'j' || is_jpeg(buf, n)) t = ag__jpeg_decode(buf, n, path, channels, AG__MAX_IMAGE_PIXELS);
    else t = ag__fail_null(AG_ERR_FORMAT, "%s: %s is neither a PNG nor a JPEG file (its first bytes are neither's)", op, path);
    ag__free(buf);
    return t;
}

static ag_tensor *load(const char *op, const char *path, int channels, char kind) {
    if (!path) return ag__fail_null(AG_ERR_ARG, "%s: path is NULL", op);
    if (channels != 0 && channels != 1 && channels != 3 && channels != 4)
        return ag__fail_null(AG_ERR_ARG, "%s: %s: channels %d is not 0, 1, 3 or 4", op, path, channels);
    ag_tensor *t = read_image(op, path, channels, kind);
    return t ? ag__own(t) : NULL;
}

ag_tensor *ag_load_png(const char *path, int channels) { return load("load_png", path, channels, 'p'); }

ag_tensor *ag_load_jpeg(const char *path, int channels) { return load("load_jpeg", path, channels, 'j'); }

ag_tensor *ag_load_image(const char *path, int channels) { return load("load_image", path, channels, 0); }

/* ---- ImageFolder ---------------------------------------------------------------------- */
typedef struct folder {
    char **paths;    /* every image, class by class */
    int64_t *labels; /* their class ids */
    int64_t n;
    int channels;
    bool resize; /* images of another size are resized to the dataset's */
} folder;

static void folder_free(void *ctx) {
    folder *f = ctx;
    for (int64_t i = 0; i < f->n; i++) ag__free(f->paths[i]);
    ag__free(f->paths);
    ag__free(f->labels);
    ag__free(f);
}

static void folder_name(void *ctx, int64_t i, char *buf, size_t size) {
    const folder *f = ctx;
    if (i >= 0 && i < f->n) snprintf(buf, size, "%s", f->paths[i]);
}

static ag_status folder_get(void *ctx, int64_t i, ag_tensor **x, ag_tensor **y, uint64_t seed) {
    (void)seed;
    const folder *f = ctx;
    ag_tensor *img = read_image("image_folder", f->paths[i], f->channels, 0);
    if (!img) return ag_last_status();
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    ag_status st = AG_OK;
    bool same = img->shape[1] == (*x)->shape[1] && img->shape[2] == (*x)->shape[2];
    float *px = (float *)ag__ptr(*x), *tmp = same ? px : f->resize ? ag__alloc_n(ag_numel(img), sizeof(float)) : NULL;
    if (!same && !f->resize)
        st = ag__fail(AG_ERR_SHAPE, "image_folder: %s is %s, the dataset's images are %s (resize it beforehand, or open the folder "
                                    "with the option resize)",
                      f->paths[i], ag__tshape(s1, img), ag__tshape(s2, *x));
    else if (!tmp) st = ag__fail(AG_ERR_NOMEM, "image_folder: out of memory");
    else { /* ToTensor: pixels / 255, then (option resize) Resize, bilinear */
        for (int64_t k = 0, n = ag_numel(img); k < n; k++) tmp[k] = (float)((uint8_t *)ag__ptr(img))[k] / 255.0f;
        if (!same && ag__resample_f32(img->shape[0], img->shape[1], img->shape[2], (*x)->shape[1], (*x)->shape[2], false, tmp, px))
            st = ag__fail(AG_ERR_NOMEM, "image_folder: out of memory");
    }
    if (tmp != px) ag__free(tmp);
    ag_release(img);
    if (y) *(int64_t *)ag__ptr(*y) = f->labels[i];
    return st;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = ag__alloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static char *join(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *d = ag__alloc(na + nb + 2);
    if (!d) return NULL;
    memcpy(d, a, na);
    d[na] = '/';
    memcpy(d + na + 1, b, nb + 1);
    return d;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A growing list of strings. */
typedef struct strings {
    char **v;
    int64_t n, cap;
} strings;

static bool push(strings *l, char *s) {
    if (!s) return false;
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 16;
        char **v = ag__alloc_n(cap, sizeof *v);
        if (!v) {
            ag__free(s);
            return false;
        }
        if (l->n) memcpy(v, l->v, (size_t)l->n * sizeof *v);
        ag__free(l->v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return true;
}

static void strings_free(strings *l) {
    for (int64_t i = 0; i < l->n; i++) ag__free(l->v[i]);
    ag__free(l->v);
    *l = (strings){0};
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_regular(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Names ending in .png, .jpg or .jpeg (any case), not hidden. */
static bool is_image_name(const char *name) {
    size_t n = strlen(name);
    return name[0] != '.' && ((n > 4 && (strcasecmp(name + n - 4, ".png") == 0 || strcasecmp(name + n - 4, ".jpg") == 0)) ||
                              (n > 5 && strcasecmp(name + n - 5, ".jpeg") == 0));
}

/* The sorted names in dir that are folders (want_dirs) or image files, symbolic
 * links followed: a dangling link or a loop of links is neither, and is left out. */
static ag_status list_dir(const char *dir, bool want_dirs, strings *out) {
    DIR *d = opendir(dir);
    if (!d) return ag__fail(AG_ERR_IO, "image_folder: cannot open the folder %s", dir);
    struct dirent *e;
    ag_status st = AG_OK;
    while (!st && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *full = join(dir, e->d_name);
        if (!full) st = ag__fail(AG_ERR_NOMEM, "image_folder: out of memory");
        else {
            bool keep = want_dirs ? is_dir(full) : is_image_name(e->d_name) && is_regular(full);
            ag__free(full);
            if (keep && !push(out, dup_str(e->d_name))) st = ag__fail(AG_ERR_NOMEM, "image_folder: out of memory");
        }
    }
    closedir(d);
    if (!st && out->n) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
    return st;
}

ag_dataset *ag_image_folder(const char *root, const ag_image_folder_options *opt) {
    static const char *op = "image_folder";
    ag_image_folder_options o = opt ? *opt : (ag_image_folder_options){0};
    if (!root) return ag__fail_null(AG_ERR_ARG, "%s: root is NULL", op);
    if (o.channels == 0) o.channels = 1;
    if ((o.channels != 1 && o.channels != 3 && o.channels != 4) || o.height < 0 || o.width < 0 || (o.height > 0) != (o.width > 0))
        return ag__fail_null(AG_ERR_ARG, "%s: channels %d (1, 3 or 4), height %lld and width %lld (both 0 or both positive)", op,
                             o.channels, (long long)o.height, (long long)o.width);
    strings classes = {0}, files = {0};
    int64_t *labels = NULL, nlabels = 0;
    ag_status st = list_dir(root, true, &classes);
    if (!st && classes.n == 0) st = ag__fail(AG_ERR_VALUE, "%s: %s has no class folder", op, root);
    for (int64_t k = 0; !st && k < classes.n; k++) {
        char *dir = join(root, classes.v[k]);
        strings names = {0};
        st = dir ? list_dir(dir, false, &names) : ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
        for (int64_t i = 0; !st && i < names.n; i++)
            if (!push(&files, join(dir, names.v[i]))) st = ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
        strings_free(&names);
        ag__free(dir);
        int64_t *nl = st ? NULL : ag__alloc_n(files.n ? files.n : 1, sizeof(int64_t));
        if (!st && !nl) st = ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
        if (nl) {
            if (nlabels) memcpy(nl, labels, (size_t)nlabels * sizeof(int64_t));
            for (int64_t i = nlabels; i < files.n; i++) nl[i] = k;
            ag__free(labels);
            labels = nl;
            nlabels = files.n;
        }
    }
    if (!st && files.n == 0) st = ag__fail(AG_ERR_VALUE, "%s: no .png, .jpg or .jpeg file in the class folders of %s", op, root);
    if (!st && o.height == 0) { /* the size of the first image */
        ag_tensor *first = read_image("image_folder", files.v[0], o.channels, 0);
        if (!first) st = ag_last_status();
        else {
            o.height = first->shape[1];
            o.width = first->shape[2];
            ag_release(first);
        }
    }
    folder *f = st ? NULL : ag__calloc(sizeof *f);
    if (!st && !f) st = ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
    if (st) {
        strings_free(&classes);
        strings_free(&files);
        ag__free(labels);
        return NULL;
    }
    *f = (folder){files.v, labels, files.n, o.channels, o.resize};
    ag_dataset_callbacks cb = {.ctx = f, .len = files.n, .num_classes = classes.n, .get = folder_get, .name = folder_name,
                               .free = folder_free};
    cb.x = (ag_item_spec){AG_F32, {3, {o.channels, o.height, o.width}}};
    cb.y = (ag_item_spec){AG_I64, {0, {0}}};
    ag_dataset *ds = ag_callback_dataset(&cb); /* frees f on failure */
    if (!ds) {
        strings_free(&classes);
        return NULL;
    }
    ds->class_names = classes.v; /* the dataset frees num_classes of them */
    return ds;
}

/*
 * Image files and the transforms that change an image's size: JPEG files
 * against what PIL decodes (test/fixtures/jpeg/, scripts/gen_jpeg_fixtures.py),
 * ImageFolder over PNG and JPEG files and over hostile names (not UTF-8, long,
 * links that dangle or loop); Resize, CenterCrop and RandomResizedCrop against
 * PyTorch (test/fixtures/transforms.txt, scripts/gen_transform_fixtures.py),
 * RandomResizedCrop's windows and ColorJitter against their formulas, and
 * resizing transforms in datasets and loaders (any number of workers).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "agrad/agrad.h"
#include "tap.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif
#define JPEG_DIR FIXTURES "/jpeg/"
#define PNG_DIR FIXTURES "/png/"

#define F32(t) ((float *)ag_data(t))

static bool error_has(ag_status st, const char *part) {
    return ag_last_status() == st && strstr(ag_last_error(), part) != NULL;
}

/* ---- JPEG ------------------------------------------------------------------------------ */
/* Each file of expected.txt decoded by agrad as PIL decoded it. */
static void test_jpeg_pixels(void) {
    FILE *f = fopen(JPEG_DIR "expected.txt", "r");
    ok(f != NULL, "jpeg/expected.txt opens");
    if (!f) return;
    char name[64];
    int C, H, W, files = 0;
    while (fscanf(f, "%63s %d %d %d", name, &C, &H, &W) == 4) {
        char path[256];
        snprintf(path, sizeof path, JPEG_DIR "%s", name);
        ag_tensor *t = ag_load_jpeg(path, 0);
        bool right = t && ag_ndim(t) == 3 && ag_size(t, 0) == C && ag_size(t, 1) == H && ag_size(t, 2) == W;
        int worst = 0;
        for (int i = 0; i < C * H * W; i++) {
            int v;
            if (fscanf(f, "%d", &v) != 1) right = false;
            else if (right) {
                int d = abs(((uint8_t *)ag_data(t))[i] - v);
                worst = d > worst ? d : worst;
            }
        }
        ok(right && worst == 0, "%s: uint8 [%d, %d, %d], the pixels PIL decodes (largest difference %d)", name, C, H, W, worst);
        files++;
    }
    fclose(f);
    ok(files == 4, "4 JPEG files checked (grey, colour 4:4:4 and 4:2:0, progressive)");

    ag_tensor *g = ag_load_jpeg(JPEG_DIR "rgb.jpg", 1), *c4 = ag_load_jpeg(JPEG_DIR "rgb.jpg", 4), *c3 = ag_load_jpeg(JPEG_DIR "rgb.jpg", 3);
    ok(g && ag_size(g, 0) == 1 && c4 && ag_size(c4, 0) == 4 && c3 && memcmp(ag_data(c4), ag_data(c3), 3 * 35) == 0 &&
           ((uint8_t *)ag_data(c4))[3 * 35] == 255,
       "channels 1 (libjpeg's grey), 4 (RGB and alpha 255)");
    ag_tensor *gg = ag_load_jpeg(JPEG_DIR "gray.jpg", 3);
    ok(gg && ag_size(gg, 0) == 3 && memcmp(ag_data(gg), (uint8_t *)ag_data(gg) + 35, 35) == 0, "a grey file as RGB: three equal planes");
    ag_tensor *any = ag_load_image(JPEG_DIR "rgb.jpg", 0), *png = ag_load_image(PNG_DIR "rgb8.png", 0);
    ok(any && c3 && memcmp(ag_data(any), ag_data(c3), 105) == 0 && png && ag_size(png, 2) == 4,
       "load_image reads either format by its first bytes");

    ag_clear_error();
    ok(!ag_load_jpeg(JPEG_DIR "truncated.jpg", 0) && error_has(AG_ERR_FORMAT, "truncated.jpg: premature end"),
       "a truncated JPEG: %s", ag_last_error());
    ok(!ag_load_jpeg(JPEG_DIR "corrupt.jpg", 0) && error_has(AG_ERR_FORMAT, "corrupt.jpg: "), "a corrupt JPEG: %s", ag_last_error());
    ok(!ag_load_jpeg(JPEG_DIR "many_scans.jpg", 0) && error_has(AG_ERR_FORMAT, "many_scans.jpg: more than 500 progressive scans"),
       "a progressive JPEG of 610 scans (a decoding-time bomb): %s", ag_last_error());
    ok(!ag_load_jpeg(JPEG_DIR "cmyk.jpg", 3) && error_has(AG_ERR_FORMAT, "cmyk.jpg: "), "a CMYK JPEG as RGB: %s", ag_last_error());
    ok(!ag_load_jpeg(PNG_DIR "rgb8.png", 0) && error_has(AG_ERR_FORMAT, "rgb8.png: "), "a PNG read as a JPEG: %s", ag_last_error());
    ok(!ag_load_png(JPEG_DIR "rgb.jpg", 0) && error_has(AG_ERR_FORMAT, "rgb.jpg: "), "a JPEG read as a PNG: %s", ag_last_error());
    ok(!ag_load_image(JPEG_DIR "expected.txt", 0) && error_has(AG_ERR_FORMAT, "neither a PNG nor a JPEG"),
       "a text file read as an image: %s", ag_last_error());
    ok(!ag_load_jpeg(JPEG_DIR "missing.jpg", 0) && error_has(AG_ERR_IO, "missing.jpg"), "a missing file: %s", ag_last_error());
    ok(!ag_load_jpeg(JPEG_DIR "rgb.jpg", 2) && ag_last_status() == AG_ERR_ARG, "channels 2: %s", ag_last_error());
    ag_clear_error();

    ag_dataset *ds = ag_image_folder(JPEG_DIR "folder", NULL);
    ag_tensor *x, *y;
    bool items = ds && ag_dataset_len(ds) == 3 && ag_dataset_num_classes(ds) == 2;
    /* names in byte order: a_png/one.png, b_jpeg/three.JPEG, b_jpeg/two.jpg */
    items &= ds && ag_dataset_get(ds, 0, &x, &y) == AG_OK && *(int64_t *)ag_data(y) == 0 &&
             fabs(F32(x)[2 * 7 + 3] - (30 * 2 + 20 * 3) / 255.0) < 1e-6;
    items &= ds && ag_dataset_get(ds, 2, &x, &y) == AG_OK && *(int64_t *)ag_data(y) == 1 &&
             fabs(F32(x)[0] - ((uint8_t *)ag_data(ag_load_jpeg(JPEG_DIR "gray.jpg", 1)))[0] / 255.0) < 1e-6;
    items &= ds && ag_dataset_get(ds, 1, &x, &y) == AG_OK && ag_size(x, 0) == 1;
    ok(items, "ImageFolder of a PNG class and a JPEG class (.jpg and .JPEG): 3 grey items, read by content");
    ag_dataset_free(ds);
}

/* ---- ImageFolder's option resize ----------------------------------------------------------- */
static void test_folder_resize(void) {
    ag_tensor *x, *y;
    ag_clear_error();
    ag_dataset *ds = ag_image_folder(PNG_DIR "folder_bad", NULL);
    ok(ds && ag_dataset_get(ds, 2, &x, &y) == AG_ERR_SHAPE && error_has(AG_ERR_SHAPE, "option resize"),
       "without the option, an image of another size fails: %s", ag_last_error());
    ag_dataset_free(ds);
    ds = ag_image_folder(PNG_DIR "folder_bad", &(ag_image_folder_options){.resize = true});
    /* c_small.png is 3 x 4 (pixel 10 y + x); the folder's images are 5 x 6 */
    ag_tensor *small = ag_rescale(ag_load_png(PNG_DIR "folder_bad/only/c_small.png", 1), 0, 255, 0, 1);
    ag_tensor *want = small ? ag_interpolate(ag_reshape(small, AG_SHAPE(1, 1, 3, 4)),
                                             &(ag_interp_opts){.size = {5, 6}, .mode = AG_INTERP_BILINEAR})
                            : NULL;
    bool same = ds && ag_dataset_get(ds, 2, &x, &y) == AG_OK && want && ag_numel(x) == 30;
    for (int i = 0; same && i < 30; i++) same &= F32(x)[i] == F32(want)[i];
    ok(same, "with it, the 3 x 4 image is resized to 5 x 6 as ag_interpolate (bilinear) does");
    ag_clear_error();
    ok(ds && ag_dataset_get(ds, 1, &x, &y) == AG_ERR_FORMAT, "a corrupt image still fails: %s", ag_last_error());
    ag_dataset_free(ds);
    ag_clear_error();
}

/* ---- hostile names ---------------------------------------------------------------------- */
static bool copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    char buf[4096];
    size_t n;
    bool fine = a && b;
    while (fine && (n = fread(buf, 1, sizeof buf, a)) > 0) fine = fwrite(buf, 1, n, b) == n;
    if (a) fclose(a);
    if (b) fclose(b);
    return fine;
}

static void test_hostile_names(void) {
    char root[] = "/tmp/agrad_folder_XXXXXX";
    ok(mkdtemp(root) != NULL, "a temporary folder");
    char cls[64], odd[128], longname[400], loop[128], dangling[128], back[128], bad[128];
    snprintf(cls, sizeof cls, "%s/cls", root);
    snprintf(odd, sizeof odd, "%s/\xff\xfe name.png", cls); /* not UTF-8 */
    char stem[251];
    memset(stem, 'n', 250), stem[250] = 0;
    snprintf(longname, sizeof longname, "%s/%s.png", cls, stem); /* 254 bytes, near NAME_MAX */
    snprintf(loop, sizeof loop, "%s/loop.png", cls);
    snprintf(dangling, sizeof dangling, "%s/dangling.png", cls);
    snprintf(back, sizeof back, "%s/up", root); /* a class folder that is the root itself */
    snprintf(bad, sizeof bad, "%s/z\xff.png", cls);
    bool made = mkdir(cls, 0700) == 0 && copy_file(PNG_DIR "folder/circle/img0.png", odd) &&
                copy_file(PNG_DIR "folder/circle/img1.png", longname) && symlink("loop.png", loop) == 0 &&
                symlink("no_such_file.png", dangling) == 0 && symlink(root, back) == 0 && copy_file(PNG_DIR "corrupt.png", bad);
    ok(made, "a class with a non-UTF-8 name, a 254-byte name, a link to itself, a dangling link, a corrupt file; a class linking to the root");
    ag_dataset *ds = ag_image_folder(root, NULL);
    ok(ds && ag_dataset_len(ds) == 3 && ag_dataset_num_classes(ds) == 2 && strcmp(ag_dataset_class_name(ds, 1), "up") == 0,
       "ImageFolder leaves the looping and dangling links out (3 files), and the link to the root is an empty class");
    ag_tensor *x, *y;
    char name[1024] = "";
    /* in byte order: the long name, z\xff.png, \xff\xfe name.png */
    bool read = ds && ag_dataset_get(ds, 0, &x, &y) == AG_OK && ag_dataset_get(ds, 2, &x, &y) == AG_OK;
    if (ds) ag_dataset_item_name(ds, 2, name, sizeof name);
    ok(read && strstr(name, "\xff\xfe name.png") != NULL, "the odd and the long names read (item 2 is %s)", name);
    ag_clear_error();
    ok(ds && ag_dataset_get(ds, 1, &x, &y) == AG_ERR_FORMAT && error_has(AG_ERR_FORMAT, "z\xff.png"),
       "the corrupt file's error names it, bytes as they are: %s", ag_last_error());
    ag_dataset_free(ds);
    unlink(odd), unlink(longname), unlink(loop), unlink(dangling), unlink(bad), unlink(back), rmdir(cls), rmdir(root);
    ag_clear_error();
}

/* ---- resizing transforms against PyTorch ------------------------------------------------ */
static ag_tensor *image(int64_t C, int64_t H, int64_t W) { /* value(c, y, x) = ((37 c + 11 y + 7 x) mod 23) / 23 */
    ag_tensor *t = ag_empty(AG_SHAPE(C, H, W), AG_F32);
    for (int64_t c = 0; c < C; c++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) F32(t)[(c * H + y) * W + x] = (float)((37 * c + 11 * y + 7 * x) % 23) / 23.0f;
    return t;
}

static void test_transform_fixtures(void) {
    FILE *f = fopen(FIXTURES "/transforms.txt", "r");
    ok(f != NULL, "transforms.txt opens");
    if (!f) return;
    char kind[32];
    int count[4] = {0}, good[4] = {0};
    double worst[4] = {0};
    const char *kinds[4] = {"resize", "resize_shorter", "center_crop", "rrc"};
    while (fscanf(f, "%31s", kind) == 1) {
        ag_scope_begin();
        ag_compose *c = ag_compose_new();
        int k = 0, a = 0, b = 0, nearest = 0;
        double s0 = 0, s1 = 0, r0 = 0, r1 = 0;
        for (; k < 4 && strcmp(kind, kinds[k]) != 0; k++) {}
        if (k == 0 && fscanf(f, "%d %d %d", &a, &b, &nearest) == 3) ag_compose_resize(c, a, b, nearest);
        else if (k == 1 && fscanf(f, "%d %d", &a, &nearest) == 2) ag_compose_resize_shorter(c, a, nearest);
        else if (k == 2 && fscanf(f, "%d %d", &a, &b) == 2) ag_compose_center_crop(c, a, b);
        else if (k == 3 && fscanf(f, "%d %d %lf %lf %lf %lf", &a, &b, &s0, &s1, &r0, &r1) == 6)
            ag_compose_random_resized_crop(c, a, b, s0, s1, r0, r1, false);
        int C, H, W, OH, OW;
        if (k == 4 || fscanf(f, "%d %d %d %d %d", &C, &H, &W, &OH, &OW) != 5) {
            ok(false, "transforms.txt: a line of kind %s cannot be read", kind);
            ag_compose_free(c);
            ag_scope_end();
            break;
        }
        ag_tensor *want = ag_empty(AG_SHAPE(C, OH, OW), AG_F32);
        for (int i = 0; i < C * OH * OW; i++) {
            double v = 0;
            if (fscanf(f, "%lf", &v) != 1) v = NAN;
            F32(want)[i] = (float)v;
        }
        ag_tensor *got = ag_compose_call(c, image(C, H, W), 11);
        count[k]++;
        double w = 0;
        bool fits = got && ag_size(got, 0) == C && ag_size(got, 1) == OH && ag_size(got, 2) == OW;
        for (int i = 0; fits && i < C * OH * OW; i++) w = fmax(w, fabs((double)F32(got)[i] - F32(want)[i]));
        if (fits && w <= 1e-6) good[k]++;
        else diag("%s %d %d on [%d, %d, %d]: %s, largest difference %g", kind, a, b, C, H, W, fits ? "the size fits" : "another size", w);
        worst[k] = fmax(worst[k], fits ? w : INFINITY);
        ag_compose_free(c);
        ag_scope_end();
    }
    fclose(f);
    ok(count[0] == 24 && good[0] == 24, "Resize to a size: %d of %d cases as F.interpolate (bilinear and nearest, down, up, "
                                        "x2, same size), largest difference %g", good[0], count[0], worst[0]);
    ok(count[1] == 12 && good[1] == 12, "Resize of the shorter side: %d of %d as torchvision's size rule and F.interpolate, "
                                        "largest difference %g", good[1], count[1], worst[1]);
    ok(count[2] == 12 && good[2] == 12, "CenterCrop: %d of %d as torchvision (round half to even, zero padding), largest "
                                        "difference %g", good[2], count[2], worst[2]);
    ok(count[3] == 3 && good[3] == 3, "RandomResizedCrop: %d of %d as torchvision (the central fallback after 10 tries, the whole "
                                      "image), largest difference %g", good[3], count[3], worst[3]);
}

/* ---- RandomResizedCrop's windows and ColorJitter against their formulas ----------------- */
static void test_resized_crop_windows(void) {
    /* channel 0 holds y, channel 1 holds x; upsampling by nearest to 64 x 64 shows every row
     * and column of the window, so that out[0, 0] = (top, left) and the extremes give h and w */
    const int64_t H = 16, W = 20;
    ag_tensor *img = ag_empty(AG_SHAPE(2, H, W), AG_F32);
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) F32(img)[y * W + x] = (float)y, F32(img)[H * W + y * W + x] = (float)x;
    const double slo = 0.2, shi = 0.6, rlo = 0.5, rhi = 2;
    ag_compose *c = ag_compose_new();
    ag_compose_random_resized_crop(c, 64, 64, slo, shi, rlo, rhi, true);
    bool windows = true, seen[16][20] = {{false}};
    int distinct = 0;
    for (uint64_t s = 0; s < 300; s++) {
        ag_scope_begin();
        ag_tensor *o = ag_compose_call(c, img, s);
        float top = 1e9f, bottom = -1, left = 1e9f, right = -1;
        for (int i = 0; o && i < 64 * 64; i++) {
            top = fminf(top, F32(o)[i]), bottom = fmaxf(bottom, F32(o)[i]);
            left = fminf(left, F32(o)[4096 + i]), right = fmaxf(right, F32(o)[4096 + i]);
        }
        double h = bottom - top + 1, w = right - left + 1;
        /* w = round(sqrt(A r)), h = round(sqrt(A / r)): A and r lie in these intervals */
        double a_lo = (w - 0.5) * (h - 0.5), a_hi = (w + 0.5) * (h + 0.5), q_lo = (w - 0.5) / (h + 0.5), q_hi = (w + 0.5) / (h - 0.5);
        windows &= o && F32(o)[0] == top && F32(o)[4096] == left && a_hi >= slo * H * W && a_lo <= shi * H * W && q_hi >= rlo &&
                   q_lo <= rhi && bottom < H && right < W;
        if (o && !seen[(int)top][(int)left]) seen[(int)top][(int)left] = true, distinct++;
        ag_scope_end();
    }
    ok(windows && distinct > 60, "RandomResizedCrop(scale [0.2, 0.6], ratio [0.5, 2]): 300 windows inside the image, their "
                                 "area and aspect those drawn, %d distinct corners", distinct);
    ag_tensor *a = ag_compose_call(c, img, 7), *b = ag_compose_call(c, img, 7), *d = ag_compose_call(c, img, 8);
    ok(a && b && d && memcmp(F32(a), F32(b), 2 * 4096 * 4) == 0 && memcmp(F32(a), F32(d), 2 * 4096 * 4) != 0,
       "the same seed gives the same crop, another seed another");
    ag_compose_free(c);

    /* brightness alone: out = min(b in, 1), one b per image in [0.5, 1.5], of mean about 1 */
    ag_tensor *rgb = image(3, 5, 7);
    c = ag_compose_new();
    ag_compose_color_jitter(c, 0.5, 0);
    bool scaled = true;
    double mean_b = 0, lo = 9, hi = 0;
    for (uint64_t s = 0; s < 200; s++) {
        ag_scope_begin();
        ag_tensor *o = ag_compose_call(c, rgb, s);
        double bf = o ? F32(o)[1] / F32(rgb)[1] : NAN; /* pixel 1 is 7/23: b in below 1 */
        for (int i = 0; o && i < 105; i++) scaled &= fabs(F32(o)[i] - fmin(bf * F32(rgb)[i], 1)) < 1e-6;
        scaled &= bf >= 0.5 && bf <= 1.5;
        mean_b += bf / 200, lo = fmin(lo, bf), hi = fmax(hi, bf);
        ag_scope_end();
    }
    ok(scaled && fabs(mean_b - 1) < 0.05 && lo < 0.6 && hi > 1.4, "ColorJitter(brightness 0.5): out = min(b in, 1), b in [%.3f, %.3f], "
                                                                   "mean %.3f",
       lo, hi, mean_b);
    ag_compose_free(c);
    /* contrast alone: out = clamp(c in + (1 - c) m, 0, 1), m the mean of 0.2989 r + 0.587 g + 0.114 b */
    c = ag_compose_new();
    ag_compose_color_jitter(c, 0, 0.8);
    double m = 0;
    for (int i = 0; i < 35; i++) m += (0.2989 * F32(rgb)[i] + 0.587 * F32(rgb)[35 + i] + 0.114 * F32(rgb)[70 + i]) / 35;
    bool blended = true;
    for (uint64_t s = 0; s < 100; s++) {
        ag_scope_begin();
        ag_tensor *o = ag_compose_call(c, rgb, s);
        /* two unclamped pixels give c: out_i - out_j = c (in_i - in_j) */
        double cf = o ? (F32(o)[1] - F32(o)[2]) / (F32(rgb)[1] - F32(rgb)[2]) : NAN;
        for (int i = 0; o && i < 105; i++) blended &= fabs(F32(o)[i] - fmin(fmax(cf * F32(rgb)[i] + (1 - cf) * m, 0), 1)) < 1e-5;
        blended &= cf >= 0.2 - 1e-5 && cf <= 1.8 + 1e-5;
        ag_scope_end();
    }
    ok(blended, "ColorJitter(contrast 0.8): out = clamp(c in + (1 - c) m, 0, 1) with the grey mean m = %.4f", m);
    ag_tensor *two = image(2, 5, 7);
    double m2 = 0;
    for (int i = 0; i < 70; i++) m2 += F32(two)[i] / 70.0;
    ag_tensor *o2 = ag_compose_call(c, two, 3);
    double c2 = o2 ? (F32(o2)[1] - F32(o2)[2]) / (F32(two)[1] - F32(two)[2]) : NAN;
    bool blended2 = o2 != NULL;
    for (int i = 0; o2 && i < 70; i++) blended2 &= fabs(F32(o2)[i] - fmin(fmax(c2 * F32(two)[i] + (1 - c2) * m2, 0), 1)) < 1e-5;
    ok(blended2, "... for 2 channels m is the mean of every value (%.4f)", m2);
    ag_compose_free(c);
}

/* ---- resizing transforms in datasets and loaders; errors -------------------------------- */
static void test_resizing_datasets(void) {
    ag_tensor *xs = ag_rand(AG_SHAPE(10, 3, 12, 9), AG_F32), *ys = ag_arange(0, 10, 1, AG_I64);
    ag_dataset *ds = ag_tensor_dataset(xs, ys);
    ag_compose *c = ag_compose_new();
    ag_compose_random_resized_crop(c, 8, 8, 0.08, 1, 3.0 / 4, 4.0 / 3, false);
    ag_compose_hflip(c, 0.5);
    ag_compose_color_jitter(c, 0.4, 0.4);
    ag_compose_center_crop(c, 6, 7);
    ag_dataset *td = ag_transformed_dataset(ds, c);
    ag_tensor *x, *y;
    ok(td && ag_dataset_get(td, 3, &x, &y) == AG_OK && ag_size(x, 0) == 3 && ag_size(x, 1) == 6 && ag_size(x, 2) == 7,
       "a transformed dataset's items take the size the transforms make: [3, 12, 9] -> [3, 6, 7]");
    ag_tensor *ref = NULL;
    bool same = true;
    for (int workers = 0; workers <= 2; workers++) {
        ag_loader *l = ag_loader_new(td, &(ag_loader_options){.batch_size = 4, .shuffle = true, .seed = 5, .num_workers = workers});
        ag_tensor *all = ag_zeros(AG_SHAPE(10, 3, 6, 7), AG_F32);
        int64_t at = 0;
        while (l && ag_loader_next(l, &x, &y) > 0) {
            memcpy(F32(all) + at * 126, F32(x), (size_t)ag_numel(x) * 4);
            at += ag_size(x, 0);
        }
        same &= at == 10;
        if (!ref) ref = all;
        else same &= memcmp(F32(ref), F32(all), 1260 * 4) == 0;
        ag_loader_free(l);
    }
    ok(same, "the batches are the same with 0, 1 and 2 workers (Resize, crops and jitter drawn per item)");
    ag_clear_error();
    ag_tensor *img = image(3, 5, 7);
    ok(ag_compose_apply(c, img, 1) == AG_ERR_SHAPE && error_has(AG_ERR_SHAPE, "use ag_compose_call"),
       "compose_apply cannot resize in place: %s", ag_last_error());
    ag_compose *same_size = ag_compose_new();
    ag_compose_resize(same_size, 5, 7, false);
    ag_tensor *copy = ag_clone(img);
    ok(ag_compose_apply(same_size, copy, 1) == AG_OK && memcmp(F32(copy), F32(img), 105 * 4) == 0,
       "a Resize to the image's own size applies in place and changes nothing");
    ag_compose_free(same_size);
    ag_tensor *flat = ag_compose_call(c, ag_rand(AG_SHAPE(9, 11), AG_F32), 3);
    ok(flat && ag_ndim(flat) == 2 && ag_size(flat, 0) == 6 && ag_size(flat, 1) == 7, "an image [H, W] stays 2-d: [9, 11] -> [6, 7]");
    ag_dataset *empty = ag_tensor_dataset(ag_zeros(AG_SHAPE(2, 1, 0, 4), AG_F32), ag_zeros(AG_SHAPE(2), AG_I64));
    ok(!ag_transformed_dataset(empty, c) && error_has(AG_ERR_SHAPE, "resizes an empty 0 x 4 image"), "empty images: %s",
       ag_last_error());
    ag_dataset_free(empty);
    ag_compose *tall = ag_compose_new();
    ag_compose_resize_shorter(tall, 1 << 19, false);
    ok(!ag_compose_call(tall, ag_zeros(AG_SHAPE(1, 1, 9), AG_F32), 0) && error_has(AG_ERR_SHAPE, "sides must be in [1, 2^20]"),
       "a shorter side of 2^19 on a 1 x 9 image: %s", ag_last_error());
    ag_compose_free(tall);
    ok(ag_compose_resize(c, 0, 4, false) == AG_ERR_ARG && ag_compose_center_crop(c, 3, (int64_t)1 << 21) == AG_ERR_ARG &&
           ag_compose_random_resized_crop(c, 4, 4, 0.5, 0.2, 0.75, 1.33, false) == AG_ERR_ARG &&
           ag_compose_random_resized_crop(c, 4, 4, 0, 0, 0.75, 1.33, false) == AG_ERR_ARG &&
           ag_compose_color_jitter(c, -1, 0) == AG_ERR_ARG && ag_compose_resize_shorter(NULL, 4, false) == AG_ERR_ARG,
       "bad sizes, scales, strengths: %s", ag_last_error());
    ok(!ag_compose_call(c, ag_zeros(AG_SHAPE(3, 5, 7), AG_U8), 0) && error_has(AG_ERR_DTYPE, "ag_rescale for bytes"),
       "a uint8 image: %s", ag_last_error());
    ag_clear_error();
    ag_compose_free(c);
    ag_dataset_free(td);
    ag_dataset_free(ds);
}

/* With no scope open, what these functions return belongs to the caller. */
static void test_no_scope(void) {
    long before = ag_live_tensors();
    ag_compose *c = ag_compose_new();
    ag_compose_random_resized_crop(c, 4, 4, 0.3, 1, 0.75, 1.33, false);
    ag_tensor *img = ag_zeros(AG_SHAPE(3, 9, 9), AG_F32), *a = ag_compose_call(c, img, 1);
    ag_tensor *j = ag_has_jpeg() ? ag_load_jpeg(JPEG_DIR "rgb.jpg", 0) : ag_zeros(AG_SHAPE(1), AG_U8);
    ag_tensor *i = ag_load_image(PNG_DIR "rgb8.png", 0);
    bool fine = a && j && i && ag_live_tensors() == before + 4;
    ag_release(a), ag_release(img), ag_release(j), ag_release(i);
    ag_compose_free(c);
    ok(fine && ag_live_tensors() == before, "without a scope: compose_call, load_jpeg and load_image give the caller's tensors "
                                            "(%ld left)", ag_live_tensors() - before);
}

int main(void) {
    test_no_scope();
    ag_scope_begin();
    if (ag_has_jpeg()) test_jpeg_pixels();
    else ok(true, "JPEG # SKIP built without libjpeg");
    test_folder_resize();
    test_hostile_names();
    test_transform_fixtures();
    test_resized_crop_windows();
    test_resizing_datasets();
    ag_scope_end();
    return tap_done();
}

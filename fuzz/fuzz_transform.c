/*
 * fuzz_transform.c - libFuzzer target for the image transforms (data/augment.c):
 * the input is an image's size and pixels and a list of transforms with their
 * parameters, hostile ones included (0, negative, past the limits, NaN, inf).
 * An adder must accept or refuse with AG_ERR_ARG and a message; ag_compose_call
 * must give an image of the size the list makes (ag__compose_out_size), the
 * same bits for the same seed, or fail with a shape/memory error and a message;
 * a transformed dataset over the image gives the same item.  Never a crash or
 * a leak.  Sides the adders accept are drawn at most 64, or past the 2^20 limit
 * (refused), so that no valid call asks for gigabytes.
 */
#include <math.h>
#include <string.h>
#include "agrad/agrad.h"
#include "data/internal.h"

static void check(bool cond) {
    if (!cond) __builtin_trap();
}

typedef struct input {
    const uint8_t *p;
    size_t n;
} input;

static unsigned u8(input *in) {
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}

/* A side: mostly 1..64, sometimes 0, negative or past the limit. */
static int64_t side(input *in) {
    unsigned v = u8(in);
    switch (v % 16) {
    case 0: return 0;
    case 1: return -(int64_t)v;
    case 2: return ((int64_t)1 << 20) + 1;
    case 3: return INT64_MAX;
    default: return 1 + (int64_t)(v / 16 * 4 + v % 4);
    }
}

/* A real: in [0, 2] in steps of 1/64 mostly, sometimes extreme. */
static double real(input *in) {
    unsigned v = u8(in);
    switch (v % 32) {
    case 0: return NAN;
    case 1: return INFINITY;
    case 2: return -1;
    case 3: return 1e9;
    default: return (double)u8(in) / 128.0;
    }
}

/* Adds one transform drawn from the input; the adder accepts or refuses with a message. */
static void add_step(ag_compose *c, input *in) {
    ag_clear_error();
    ag_status st;
    switch (u8(in) % 10) {
    case 0: st = ag_compose_resize(c, side(in), side(in), u8(in) & 1); break;
    case 1: st = ag_compose_resize_shorter(c, side(in), u8(in) & 1); break;
    case 2: st = ag_compose_center_crop(c, side(in), side(in)); break;
    case 3: {
        int64_t h = side(in), w = side(in);
        double s0 = real(in), s1 = real(in), r0 = real(in), r1 = real(in);
        st = ag_compose_random_resized_crop(c, h, w, s0, s1, r0, r1, u8(in) & 1);
        break;
    }
    case 4: {
        double b = real(in);
        st = ag_compose_color_jitter(c, b, real(in));
        break;
    }
    case 5: st = ag_compose_random_crop(c, (int)(u8(in) % 8) - 1); break;
    case 6: st = ag_compose_hflip(c, real(in)); break;
    case 7: {
        double d = real(in) * 90, t = real(in) / 4, z = real(in);
        st = ag_compose_random_affine(c, -d, d, t, z, z + real(in));
        break;
    }
    case 8: {
        double p = real(in), s0 = real(in) / 4, s1 = real(in) / 2, r0 = real(in), r1 = real(in);
        st = ag_compose_random_erasing(c, p, s0, s1, r0, r1, real(in));
        break;
    }
    default: st = ag_compose_gaussian_noise(c, real(in)); break;
    }
    check(st == AG_OK || (st == AG_ERR_ARG && ag_last_error()[0]) || st == AG_ERR_NOMEM);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    input in = {data, size};
    int64_t C = 1 + u8(&in) % 4, H = u8(&in) % 41, W = u8(&in) % 41;
    bool flat = C == 1 && (u8(&in) & 1); /* an image [H, W] */
    ag_compose *c = ag_compose_new();
    if (!c) return 0;
    for (int k = 0, n = (int)(u8(&in) % 6); k < n; k++) add_step(c, &in);
    ag_tensor *img = flat ? ag_empty(AG_SHAPE(H, W), AG_F32) : ag_empty(AG_SHAPE(C, H, W), AG_F32);
    check(img != NULL);
    for (int64_t i = 0; i < C * H * W; i++) ((float *)ag_data(img))[i] = (float)u8(&in) / 255.0f;
    uint64_t seed = u8(&in);

    ag_clear_error();
    int64_t oh = -1, ow = -1;
    ag_status size_st = ag__compose_out_size("fuzz", c, C, H, W, &oh, &ow);
    ag_tensor *a = ag_compose_call(c, img, seed);
    if (a) {
        check(!size_st && ag_dtype_of(a) == AG_F32 && ag_ndim(a) == (flat ? 2 : 3));
        check(ag_size(a, -2) == oh && ag_size(a, -1) == ow && (flat || ag_size(a, 0) == C));
        ag_tensor *b = ag_compose_call(c, img, seed);
        check(b && memcmp(ag_data(a), ag_data(b), (size_t)ag_numel(a) * sizeof(float)) == 0);
        ag_release(b);
        /* a dataset of this one image, transformed: its item is the same picture for the item's seed */
        ag_tensor *x = flat ? ag_reshape(img, AG_SHAPE(1, H, W)) : ag_reshape(img, AG_SHAPE(1, C, H, W));
        ag_dataset *ds = ag_tensor_dataset(x, x); /* x as its own target */
        ag_dataset *td = ds ? ag_transformed_dataset(ds, c) : NULL;
        ag_tensor *item = NULL, *want = NULL;
        if (td && ag_dataset_get(td, 0, &item, NULL) == AG_OK) {
            want = ag_compose_call(c, img, ag_item_seed(0, 0, 0));
            check(want && ag_numel(want) == ag_numel(item) &&
                  memcmp(ag_data(want), ag_data(item), (size_t)ag_numel(item) * sizeof(float)) == 0);
        }
        ag_release(item);
        ag_release(want);
        ag_dataset_free(td);
        ag_dataset_free(ds);
        ag_release(x);
        ag_release(a);
    } else {
        ag_status s = ag_last_status();
        check((s == AG_ERR_SHAPE || s == AG_ERR_NOMEM) && ag_last_error()[0]);
    }
    ag_release(img);
    ag_compose_free(c);
    check(ag_live_tensors() == 0);
    return 0;
}

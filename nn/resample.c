/*
 * resample.c - nn.ZeroPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d (ag_pad of the
 * last two dims) and nn.Upsample (ag_interpolate), with PyTorch's repr.
 */
#include <stdio.h>
#include <string.h>
#include "core/internal.h"
#include "agrad/nn.h"
#include "nn/repr.h"

/* ---- ZeroPad2d, ReflectionPad2d, ReplicationPad2d ----------------------------------------------------- */
typedef struct pad2d {
    int64_t pad[4]; /* left, right, top, bottom: F.pad's list for the last two dims */
    ag_pad_mode mode;
} pad2d;

static ag_tensor *pad2d_forward(ag_module *m, ag_tensor *x) {
    const pad2d *p = ag_module_data(m);
    return ag_pad(x, 4, p->pad, p->mode, 0);
}

/* PyTorch's extra_repr: the padding tuple, "(1, 2, 3, 4)". */
static void pad2d_describe(const ag_module *m, char *buf, size_t size) {
    const pad2d *p = ag_module_data(m);
    ag__py_tuple(buf, size, 4, p->pad);
}

static const ag_module_type zero_pad2d_type = {"ZeroPad2d", pad2d_forward, pad2d_describe, NULL};
static const ag_module_type reflection_pad2d_type = {"ReflectionPad2d", pad2d_forward, pad2d_describe, NULL};
static const ag_module_type replication_pad2d_type = {"ReplicationPad2d", pad2d_forward, pad2d_describe, NULL};

static ag_module *pad2d_new(const ag_module_type *type, ag_pad_mode mode, int64_t left, int64_t right, int64_t top,
                            int64_t bottom) {
    pad2d *p = ag__alloc(sizeof *p);
    if (!p) return NULL;
    *p = (pad2d){{left, right, top, bottom}, mode};
    return ag_module_new(type, p);
}

ag_module *ag_nn_zero_pad2d(int64_t left, int64_t right, int64_t top, int64_t bottom) {
    return pad2d_new(&zero_pad2d_type, AG_PAD_CONSTANT, left, right, top, bottom);
}

ag_module *ag_nn_reflection_pad2d(int64_t left, int64_t right, int64_t top, int64_t bottom) {
    return pad2d_new(&reflection_pad2d_type, AG_PAD_REFLECT, left, right, top, bottom);
}

ag_module *ag_nn_replication_pad2d(int64_t left, int64_t right, int64_t top, int64_t bottom) {
    return pad2d_new(&replication_pad2d_type, AG_PAD_REPLICATE, left, right, top, bottom);
}

/* ---- Upsample ----------------------------------------------------------------------------------------- */
static ag_tensor *upsample_forward(ag_module *m, ag_tensor *x) {
    return ag_interpolate(x, ag_module_data(m));
}

/* PyTorch's extra_repr: "scale_factor=2.0, mode=nearest" or "size=(3, 4), mode=bilinear"; a value whose two
 * entries agree prints once (PyTorch prints what it was given: an int/float or a tuple). */
static void upsample_describe(const ag_module *m, char *buf, size_t size) {
    const ag_interp_opts *o = ag_module_data(m);
    const char *mode = o->mode == AG_INTERP_BILINEAR ? "bilinear" : "nearest";
    char a[40], b[40], t[96];
    if (o->size[0] || o->size[1]) {
        if (o->size[0] == o->size[1]) snprintf(buf, size, "size=%lld, mode=%s", (long long)o->size[0], mode);
        else snprintf(buf, size, "size=%s, mode=%s", ag__py_tuple(t, sizeof t, 2, o->size), mode);
    } else if (o->scale_factor[0] == o->scale_factor[1]) {
        snprintf(buf, size, "scale_factor=%s, mode=%s", ag__py_float(a, sizeof a, o->scale_factor[0]), mode);
    } else {
        snprintf(buf, size, "scale_factor=(%s, %s), mode=%s", ag__py_float(a, sizeof a, o->scale_factor[0]),
                 ag__py_float(b, sizeof b, o->scale_factor[1]), mode);
    }
}

static const ag_module_type upsample_type = {"Upsample", upsample_forward, upsample_describe, NULL};

ag_module *ag_nn_upsample(const ag_interp_opts *o) {
    if (!o) return ag__fail_null(AG_ERR_ARG, "nn.Upsample: options with a size or a scale factor are required");
    const bool by_size = o->size[0] || o->size[1], by_scale = o->scale_factor[0] != 0 || o->scale_factor[1] != 0;
    if (by_size == by_scale)
        return ag__fail_null(AG_ERR_ARG, "nn.Upsample: give either size or scale_factor, not %s",
                             by_size ? "both" : "neither");
    if (o->mode != AG_INTERP_NEAREST && o->mode != AG_INTERP_BILINEAR)
        return ag__fail_null(AG_ERR_ARG, "nn.Upsample: unknown mode %d", (int)o->mode);
    ag_interp_opts *d = ag__alloc(sizeof *d);
    if (!d) return NULL;
    *d = *o;
    return ag_module_new(&upsample_type, d);
}

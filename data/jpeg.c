/*
 * data/jpeg.c - JPEG files through libjpeg (Debian's libjpeg62-turbo): baseline
 * and progressive, grey or YCbCr colour, converted by libjpeg to the channels
 * asked for, 8 bits each.  Built when meson finds libjpeg (-Djpeg=auto); without
 * it the decoder is there and refuses every file with a message saying so.
 */
#include <stdio.h>
#include <string.h>
#include "data/internal.h"
#include <agrad_jpeg.h> /* AG_HAVE_JPEG, written by meson in the build folder */

#if AG_HAVE_JPEG
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

/* The most scans a progressive file may have (libjpeg-turbo's own fuzzers and
 * TJPARAM_SCANLIMIT use 500): beyond, a small file could keep the decoder busy
 * for minutes redoing the whole image per scan. */
#define MAX_SCANS 500

/* libjpeg reports fatal errors through error_exit, which must not return:
 * it jumps back to the decoder with the message saved. */
typedef struct reader {
    struct jpeg_error_mgr err;
    struct jpeg_progress_mgr progress;
    jmp_buf back;
    char message[JMSG_LENGTH_MAX];
    bool truncated; /* libjpeg warned of a premature end of data (it pads with grey) */
    ag_tensor *out;      /* the image being decoded */
    unsigned char *row;  /* one interleaved scanline */
} reader;

static void on_error(j_common_ptr cinfo) {
    reader *r = (reader *)(void *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, r->message);
    longjmp(r->back, 1);
}

/* Warnings (level -1) are kept quiet: a truncated file is refused after the
 * read; the others (extraneous bytes before a marker) are what real cameras
 * write, and decode as other readers decode them. */
static void on_message(j_common_ptr cinfo, int level) {
    reader *r = (reader *)(void *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) r->truncated = true;
}

static void on_progress(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    reader *r = (reader *)(void *)cinfo->err;
    if (d->progressive_mode && d->input_scan_number > MAX_SCANS) {
        snprintf(r->message, sizeof r->message, "more than %d progressive scans", MAX_SCANS);
        longjmp(r->back, 1);
    }
}

/* The decode proper: fills r->out (a new unowned tensor) or returns the failure.
 * What a jump back must free is in r, which lives in memory the caller owns
 * (its address escapes), so its values after the jump are those last stored. */
static ag_status decode(struct jpeg_decompress_struct *d, reader *r, const unsigned char *buf, size_t n, const char *name,
                        int channels, int64_t max_pixels) {
    jpeg_mem_src(d, buf, (unsigned long)n);
    jpeg_read_header(d, TRUE);
    int own = d->num_components == 1 ? 1 : 3;
    int C = channels ? channels : own;
    d->out_color_space = C == 1 ? JCS_GRAYSCALE : C == 3 ? JCS_RGB : JCS_EXT_RGBA;
    if ((uint64_t)d->image_width * d->image_height > (uint64_t)max_pixels)
        return ag__fail(AG_ERR_FORMAT, "load_jpeg: %s: a %u x %u image has more pixels than the limit (a decompression bomb?)", name,
                        (unsigned)d->image_height, (unsigned)d->image_width);
    jpeg_start_decompress(d);
    int64_t H = d->output_height, W = d->output_width;
    if (d->output_components != C) /* libjpeg gives what was asked for; this cannot happen */
        return ag__fail(AG_ERR_FORMAT, "load_jpeg: %s: %d channels decoded, %d asked for", name, d->output_components, C);
    r->row = ag__alloc_n(W * C, 1);
    r->out = r->row ? ag__new_unowned(AG_U8, 3, (int64_t[]){C, H, W}, false) : NULL;
    if (!r->out)
        return ag__fail(AG_ERR_NOMEM, "load_jpeg: %s: out of memory for a %lld x %lld image", name, (long long)H, (long long)W);
    uint8_t *planes = (uint8_t *)ag__ptr(r->out);
    while (d->output_scanline < d->output_height) {
        int64_t y = d->output_scanline;
        JSAMPROW row = r->row;
        jpeg_read_scanlines(d, &row, 1);
        for (int64_t x = 0; x < W; x++) /* interleaved [W, C] to planes [C, H, W] */
            for (int c = 0; c < C; c++) planes[((int64_t)c * H + y) * W + x] = r->row[x * C + c];
    }
    jpeg_finish_decompress(d);
    if (r->truncated) return ag__fail(AG_ERR_FORMAT, "load_jpeg: %s: premature end of JPEG data (truncated)", name);
    return AG_OK;
}

ag_tensor *ag__jpeg_decode(const unsigned char *buf, size_t n, const char *name, int channels, int64_t max_pixels) {
    struct jpeg_decompress_struct d;
    reader r;
    memset(&d, 0, sizeof d);
    memset(&r, 0, sizeof r);
    if (n == 0) return ag__fail_null(AG_ERR_FORMAT, "load_jpeg: %s: an empty file", name);
    d.err = jpeg_std_error(&r.err);
    r.err.error_exit = on_error;
    r.err.emit_message = on_message;
    r.progress.progress_monitor = on_progress;
    ag_status st;
    if (setjmp(r.back)) {
        st = ag__fail(AG_ERR_FORMAT, "load_jpeg: %s: %s", name, r.message);
    } else {
        jpeg_create_decompress(&d);
        d.progress = &r.progress;
        st = decode(&d, &r, buf, n, name, channels, max_pixels);
    }
    jpeg_destroy_decompress(&d);
    ag__free(r.row);
    if (st) {
        ag_release(r.out);
        return NULL;
    }
    return r.out;
}
#else
ag_tensor *ag__jpeg_decode(const unsigned char *buf, size_t n, const char *name, int channels, int64_t max_pixels) {
    (void)buf, (void)n, (void)channels, (void)max_pixels;
    return ag__fail_null(AG_ERR_FORMAT, "load_jpeg: %s is a JPEG file, and this build of agrad has no JPEG reader (install "
                                        "libjpeg62-turbo-dev and rebuild; meson option -Djpeg)", name);
}
#endif

bool ag_has_jpeg(void) { return AG_HAVE_JPEG != 0; }

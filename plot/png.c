/*
 * plot/png.c - a minimal PNG encoder for the images of ag_plot_image: 8-bit
 * RGB, one IDAT chunk compressed by zlib (through agrad's allocator, ag__zstream_init), filter
 * type 0 on every scanline, no interlacing.  The SVG embeds the file as a
 * base64 data URI, some 1 KB for a 28 x 28 picture instead of a rectangle
 * per pixel.
 */
#include <string.h>
#include <zlib.h>
#include "io/file.h"
#include "plot/internal.h"

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes a chunk (length, type, data, CRC of type and data) at p; returns its size. */
static size_t chunk(unsigned char *p, const char *type, const unsigned char *data, size_t n) {
    put32(p, (uint32_t)n);
    memcpy(p + 4, type, 4);
    if (n) memcpy(p + 8, data, n);
    put32(p + 8 + n, (uint32_t)crc32(crc32(0, Z_NULL, 0), p + 4, (uInt)(n + 4)));
    return n + 12;
}

bool ag__png_encode(const unsigned char *rgb, int rows, int cols, unsigned char **out, size_t *outn) {
    *out = NULL;
    *outn = 0;
    size_t line = 1 + 3 * (size_t)cols, raw_n = line * (size_t)rows;
    unsigned char *raw = ag__alloc(raw_n);
    if (!raw) return false;
    for (int r = 0; r < rows; r++) {
        raw[r * line] = 0; /* filter: none */
        memcpy(raw + r * line + 1, rgb + 3 * (size_t)r * (size_t)cols, 3 * (size_t)cols);
    }
    z_stream zs;
    ag__zstream_init(&zs);
    if (deflateInit(&zs, 9) != Z_OK) {
        ag__free(raw);
        return false;
    }
    size_t bound = deflateBound(&zs, (uLong)raw_n);
    unsigned char *png = ag__alloc(bound + 8 + 25 + 12 + 12);
    bool good = png != NULL;
    size_t n = 0;
    if (good) {
        static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        memcpy(png, signature, 8);
        unsigned char ihdr[13] = {0};
        put32(ihdr, (uint32_t)cols);
        put32(ihdr + 4, (uint32_t)rows);
        ihdr[8] = 8; /* bits per sample */
        ihdr[9] = 2; /* colour type: RGB */
        n = 8 + chunk(png + 8, "IHDR", ihdr, 13);
        /* IDAT: compress straight into place after its length and type. */
        zs.next_in = raw;
        zs.avail_in = (uInt)raw_n;
        zs.next_out = png + n + 8;
        zs.avail_out = (uInt)bound;
        good = deflate(&zs, Z_FINISH) == Z_STREAM_END;
    }
    if (good) {
        size_t z = zs.total_out;
        put32(png + n, (uint32_t)z);
        memcpy(png + n + 4, "IDAT", 4);
        put32(png + n + 8 + z, (uint32_t)crc32(crc32(0, Z_NULL, 0), png + n + 4, (uInt)(z + 4)));
        n += z + 12;
        n += chunk(png + n, "IEND", NULL, 0);
    }
    deflateEnd(&zs);
    ag__free(raw);
    if (!good) {
        ag__free(png);
        return false;
    }
    *out = png;
    *outn = n;
    return true;
}

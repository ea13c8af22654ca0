/*
 * fuzz_png.c - libFuzzer target for the PNG reader (data/png.c through libpng):
 * any bytes must give a uint8 image [C, H, W] with the channels asked for, or
 * NULL with a format/memory error and a message, never a crash or a leak.  The
 * fuzzer's pixel limit is lower than the library's (4 Mi pixels), so that a
 * forged header does not spend the run on allocating and zeroing.  libpng
 * refuses a chunk whose CRC is wrong, which nearly every mutation makes it, and
 * is not instrumented (a system library), so the fuzzer cannot learn to fix
 * CRCs: each input is decoded as it is and, where a CRC is wrong, once more
 * with every chunk's CRC recomputed, which takes mutations into inflate, the
 * filters, interlacing and the colour conversions.
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "agrad/agrad.h"
#include "data/internal.h"

static void check(bool cond) {
    if (!cond) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* A copy of data with the CRC of every whole chunk after the signature recomputed,
 * or NULL when none was wrong. */
static uint8_t *fix_crcs(const uint8_t *data, size_t size) {
    uint8_t *copy = NULL;
    for (size_t at = 8; at + 12 <= size;) {
        size_t len = be32(data + at);
        if (len > size - at - 12) break;
        uint32_t crc = (uint32_t)crc32(0, data + at + 4, (uInt)(len + 4));
        if (crc != be32(data + at + 8 + len)) {
            if (!copy) { /* the first wrong CRC: copy everything, then patch */
                if (!(copy = malloc(size))) return NULL;
                memcpy(copy, data, size);
            }
            uint8_t *p = copy + at + 8 + len;
            p[0] = (uint8_t)(crc >> 24), p[1] = (uint8_t)(crc >> 16), p[2] = (uint8_t)(crc >> 8), p[3] = (uint8_t)crc;
        }
        at += len + 12;
    }
    return copy;
}

static void decode_all(const uint8_t *data, size_t size) {
    static const int channels[4] = {0, 1, 3, 4};
    for (int k = 0; k < 4; k++) {
        ag_clear_error();
        ag_tensor *t = ag__png_decode(data, size, "fuzz.png", channels[k], (int64_t)1 << 22);
        if (t) {
            check(ag_dtype_of(t) == AG_U8 && ag_ndim(t) == 3);
            int64_t C = ag_size(t, 0);
            check(channels[k] ? C == channels[k] : C >= 1 && C <= 4);
            check(ag_size(t, 1) >= 1 && ag_size(t, 2) >= 1 && ag_size(t, 1) * ag_size(t, 2) <= (int64_t)1 << 22);
            ag_release(t);
        } else {
            ag_status s = ag_last_status();
            check((s == AG_ERR_FORMAT || s == AG_ERR_NOMEM) && ag_last_error()[0]);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    decode_all(data, size);
    uint8_t *fixed = fix_crcs(data, size);
    if (fixed) decode_all(fixed, size);
    free(fixed);
    check(ag_live_tensors() == 0);
    return 0;
}

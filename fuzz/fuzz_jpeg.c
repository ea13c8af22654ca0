/*
 * fuzz_jpeg.c - libFuzzer target for the JPEG reader (data/jpeg.c, libjpeg-turbo):
 * any bytes must give a uint8 image [C, H, W] with the channels asked for, or
 * NULL with a format/memory error and a message, never a crash or a leak.  The
 * fuzzer's pixel limit is lower than the library's (4 Mi pixels), so that a
 * forged header does not spend the run on allocating and zeroing.
 */
#include "agrad/agrad.h"
#include "data/internal.h"

static void check(bool cond) {
    if (!cond) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int channels[4] = {0, 1, 3, 4};
    for (int k = 0; k < 4; k++) {
        ag_clear_error();
        ag_tensor *t = ag__jpeg_decode(data, size, "fuzz.jpg", channels[k], (int64_t)1 << 22);
        if (t) {
            check(ag_dtype_of(t) == AG_U8 && ag_ndim(t) == 3);
            int64_t C = ag_size(t, 0);
            check(channels[k] ? C == channels[k] : C == 1 || C == 3);
            check(ag_size(t, 1) >= 1 && ag_size(t, 2) >= 1 && ag_size(t, 1) * ag_size(t, 2) <= (int64_t)1 << 22);
            ag_release(t);
        } else {
            ag_status s = ag_last_status();
            check((s == AG_ERR_FORMAT || s == AG_ERR_NOMEM) && ag_last_error()[0]);
        }
    }
    check(ag_live_tensors() == 0);
    return 0;
}

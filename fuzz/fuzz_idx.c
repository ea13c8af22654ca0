/*
 * fuzz_idx.c - libFuzzer target for the IDX reader (plain and gzip): any
 * bytes must give a tensor whose size matches the header, or NULL with a
 * format/dtype/memory error and a message, never a crash or a leak.
 */
#include <string.h>
#include "agrad/agrad.h"
#include "data/internal.h"

static void check(bool cond) {
    if (!cond) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const ag_dtype dtypes[4] = {AG_F32, AG_F64, AG_I64, AG_U8};
    for (int k = 0; k < 4; k++) {
        ag_clear_error();
        ag_tensor *t = ag__idx_decode(data, size, "fuzz.idx", dtypes[k]);
        if (t) {
            check(ag_dtype_of(t) == dtypes[k] && ag_ndim(t) <= AG_MAX_DIMS);
            /* a plain file holds exactly its header and its elements */
            if (!ag__is_gzip(data, size)) {
                static const size_t esize[16] = {[8] = 1, [9] = 1, [11] = 2, [12] = 4, [13] = 4, [14] = 8};
                check(size == 4 + 4 * (size_t)ag_ndim(t) + (size_t)ag_numel(t) * esize[data[2] & 15]);
            }
            ag_release(t);
        } else {
            ag_status s = ag_last_status();
            check((s == AG_ERR_FORMAT || s == AG_ERR_DTYPE || s == AG_ERR_NOMEM) && ag_last_error()[0]);
        }
    }
    check(ag_live_tensors() == 0);
    return 0;
}

/*
 * fuzz_safetensors.c - libFuzzer target for ag_load_safetensors (autograd/
 * state.c), which reads a path: each input is written to a private temporary
 * file first.  Any bytes must give a state dict or NULL with a message, never
 * a crash or a leak.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "agrad/agrad.h"
#include "core/internal.h"

static void check(bool cond) {
    if (!cond) __builtin_trap();
}

static char path[64];

static void remove_file(void) { unlink(path); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/agrad-fuzz-%ld.safetensors", (long)getpid());
        atexit(remove_file);
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t wrote = fwrite(data, 1, size, f);
    fclose(f);
    if (wrote != size) return 0;
    ag_clear_error();
    ag_state_dict *sd = ag_load_safetensors(path);
    if (sd) {
        for (int i = 0; i < ag_state_dict_size(sd); i++) {
            ag_tensor *t = ag_state_dict_tensor(sd, i);
            check(t && ag_state_dict_name(sd, i) && ag_state_dict_get(sd, ag_state_dict_name(sd, i)) == t);
            /* touch every byte of the tensor's data */
            volatile unsigned char sum = 0;
            const unsigned char *p = ag_data(t);
            for (size_t k = 0, n = (size_t)ag_numel(t) * ag_dtype_size(ag_dtype_of(t)); k < n; k++) sum += p[k];
            (void)sum;
        }
        ag_state_dict_free(sd);
    } else {
        ag_status s = ag_last_status();
        check((s == AG_ERR_FORMAT || s == AG_ERR_IO || s == AG_ERR_NOMEM) && ag_last_error()[0]);
    }
    check(ag_live_tensors() == 0);
    return 0;
}

/*
 * core/backend.c - the switch between oneDNN and the portable C kernels.
 *
 * On by default; AGRAD_ONEDNN=0 in the environment turns it off at start-up,
 * ag_set_onednn_enabled at run time.  With it off every op runs its C kernel.
 */
#include <stdlib.h>
#include <string.h>
#include "core/internal.h"

static atomic_int enabled = -1; /* -1: not read from the environment yet */

bool ag_onednn_enabled(void) {
    int e = atomic_load_explicit(&enabled, memory_order_relaxed);
    if (e < 0) {
        const char *v = getenv("AGRAD_ONEDNN");
        e = !(v && (strcmp(v, "0") == 0 || strcmp(v, "off") == 0 || strcmp(v, "false") == 0));
        atomic_store_explicit(&enabled, e, memory_order_relaxed);
    }
    return e != 0;
}

void ag_set_onednn_enabled(bool on) { atomic_store_explicit(&enabled, on ? 1 : 0, memory_order_relaxed); }

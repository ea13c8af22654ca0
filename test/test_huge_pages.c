/*
 * The default allocator's large blocks (core/alloc.c): a block of AG__HUGE_MIN bytes or more
 * starts on a 2 MiB boundary, and where the kernel has transparent huge pages its whole
 * 2 MiB pages are advised as such (the mapping's VmFlags in /proc/self/smaps show "hg"), so
 * that touching it costs a page fault per 2 MiB instead of one per 4 KiB.  A tensor of that
 * size (through the block cache) gets such a block; its data reads back what was written.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"

#define HUGE_PAGE ((uintptr_t)2 << 20)

/* Whether the kernel has transparent huge pages (the sysfs switch exists). */
static bool thp_known(void) { return access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0; }

/* 1 if the mapping holding address p has the VmFlag "hg" (MADV_HUGEPAGE) in /proc/self/smaps,
 * 0 if it has not, -1 if no mapping holds p or smaps cannot be read. */
static int advised_huge(const void *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    bool inside = false;
    int found = -1;
    const uintptr_t a = (uintptr_t)p;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = a >= lo && a < hi;
        } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            found = strstr(line, " hg") != NULL;
            break;
        }
    }
    fclose(f);
    return found;
}

int main(void) {
    /* a raw block of the bound, and one a little above it, not a whole number of huge pages */
    const size_t sizes[2] = {AG__HUGE_MIN, AG__HUGE_MIN + 3 * HUGE_PAGE / 2 + 40};
    for (int k = 0; k < 2; k++) {
        unsigned char *p = ag__alloc(sizes[k]);
        ok(p != NULL, "a block of %zu bytes", sizes[k]);
        if (!p) continue;
        ok((uintptr_t)p % HUGE_PAGE == 0, "it starts on a 2 MiB boundary (%p)", (void *)p);
        if (thp_known()) {
            ok(advised_huge(p) == 1, "its first 2 MiB are advised as huge pages");
            ok(advised_huge(p + sizes[k] / HUGE_PAGE * HUGE_PAGE - 1) == 1, "so is its last whole 2 MiB page");
        }
        for (size_t i = 0; i < sizes[k]; i++) p[i] = (unsigned char)(i * 7 + 3);
        size_t bad = 0;
        for (size_t i = 0; i < sizes[k]; i++) bad += p[i] != (unsigned char)(i * 7 + 3);
        ok(bad == 0, "the block holds what was written (%zu bytes differ)", bad);
        ag__free(p);
    }

    /* a tensor of 8 MiB through the block cache: its data lies in an advised mapping */
    ag_free_caches();
    ag_tensor *t = ag_full(AG_SHAPE(1024, 2048), 1.5, AG_F32);
    ok(t != NULL, "an [1024, 2048] float32 tensor");
    if (t) {
        const float *v = ag_data(t);
        if (thp_known()) ok(advised_huge(v) == 1, "its data lies in memory advised as huge pages");
        int64_t bad = 0;
        for (int64_t i = 0; i < ag_numel(t); i++) bad += v[i] != 1.5f;
        ok(bad == 0, "its elements are 1.5 (%lld differ)", (long long)bad);
        ag_release(t);
    }
    ag_free_caches();
    ok(ag_live_tensors() == 0, "no tensor left alive");
    return tap_done();
}

/*
 * replay.c - runs a libFuzzer target's LLVMFuzzerTestOneInput on every file of
 * the folders given, without libFuzzer: the ordinary test suite (test/meson.build)
 * links it with each file reader's target and replays the committed corpus
 * fuzz/corpus/<target>/ (seeds and past findings) in every build, gcc's included.
 * Speaks TAP: one line per file; a finding stops the program (the target traps).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The whole of path in a new malloc'd buffer (*n bytes), or NULL. */
static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += got;
        if (len == cap) {
            uint8_t *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    fclose(f);
    *n = len;
    return buf;
}

int main(int argc, char **argv) {
    int count = 0, failed = 0;
    for (int a = 1; a < argc; a++) {
        DIR *d = opendir(argv[a]);
        if (!d) {
            printf("not ok %d - cannot open the corpus folder %s\n", ++count, argv[a]);
            failed++;
            continue;
        }
        char **names = NULL;
        size_t n = 0;
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            char **v = realloc(names, (n + 1) * sizeof *names);
            if (!v) break;
            names = v;
            names[n] = malloc(strlen(argv[a]) + strlen(e->d_name) + 2);
            if (!names[n]) break;
            sprintf(names[n++], "%s/%s", argv[a], e->d_name);
        }
        closedir(d);
        if (n) qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n; i++) {
            size_t size;
            uint8_t *data = slurp(names[i], &size);
            if (!data) {
                printf("not ok %d - cannot read %s\n", ++count, names[i]);
                failed++;
            } else {
                fflush(stdout);
                LLVMFuzzerTestOneInput(data, size);
                printf("ok %d - %s (%zu bytes)\n", ++count, names[i], size);
            }
            free(data);
            free(names[i]);
        }
        free(names);
    }
    printf("1..%d\n", count);
    return failed != 0;
}

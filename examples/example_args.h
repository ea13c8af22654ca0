/*
 * example_args.h - the command line shared by the examples (header only):
 * "--name value" options and flags, --help, and paths in the output directory.
 *
 *     int epochs = 5; const char *out = ".";
 *     ex_opt opts[] = {{"epochs", 'i', &epochs, "training epochs"},
 *                      {"out", 's', &out, "directory for the SVG pictures"}};
 *     int rc = ex_parse(argc, argv, "trains a model", opts, 2);
 *     if (rc >= 0) return rc;   // --help printed (0) or a bad option (2)
 */
#ifndef EXAMPLE_ARGS_H
#define EXAMPLE_ARGS_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct ex_opt {
    const char *name; /* without the leading "--" */
    char type;        /* 'i' int, 'd' double, 's' string, 'f' flag (bool, takes no value) */
    void *value;      /* int *, double *, const char **, bool *; holds the default */
    const char *help;
} ex_opt;

static void ex_usage(FILE *f, const char *prog, const char *about, const ex_opt *opts, int n) {
    fprintf(f, "usage: %s [options]\n%s\n\noptions:\n", prog, about);
    for (int i = 0; i < n; i++) {
        char def[64] = "";
        switch (opts[i].type) {
        case 'i': snprintf(def, sizeof def, " (default %d)", *(int *)opts[i].value); break;
        case 'd': snprintf(def, sizeof def, " (default %g)", *(double *)opts[i].value); break;
        case 's': snprintf(def, sizeof def, " (default %s)", *(const char **)opts[i].value); break;
        default: break;
        }
        fprintf(f, "  --%-14s %s%s\n", opts[i].name, opts[i].help, def);
    }
    fprintf(f, "  --%-14s %s\n", "help", "show this help and exit");
}

/* Parses argv into the options.  Returns -1 to go on, 0 after --help, 2 after a
 * bad option (with a message on stderr): `if (rc >= 0) return rc;`. */
static int ex_parse(int argc, char **argv, const char *about, ex_opt *opts, int n) {
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            ex_usage(stdout, argv[0], about, opts, n);
            return 0;
        }
        int i = 0;
        while (i < n && !(strncmp(arg, "--", 2) == 0 && strcmp(arg + 2, opts[i].name) == 0)) i++;
        if (i == n) {
            fprintf(stderr, "%s: unknown option %s (see --help)\n", argv[0], arg);
            return 2;
        }
        if (opts[i].type == 'f') {
            *(bool *)opts[i].value = true;
            continue;
        }
        if (a + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n", argv[0], arg);
            return 2;
        }
        const char *v = argv[++a];
        char *end = NULL;
        errno = 0;
        if (opts[i].type == 'i') {
            long x = strtol(v, &end, 10);
            if (*end || end == v || errno || x < -1000000000L || x > 1000000000L) goto bad;
            *(int *)opts[i].value = (int)x;
        } else if (opts[i].type == 'd') {
            double x = strtod(v, &end);
            if (*end || end == v || errno) goto bad;
            *(double *)opts[i].value = x;
        } else {
            *(const char **)opts[i].value = v;
        }
        continue;
    bad:
        fprintf(stderr, "%s: %s: \"%s\" is not a number\n", argv[0], arg, v);
        return 2;
    }
    return -1;
}

/* dir/file in buf (the directory is created if missing); returns buf, or NULL
 * with a message on stderr. */
static const char *ex_path(char *buf, size_t size, const char *dir, const char *file) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s: %s\n", dir, strerror(errno));
        return NULL;
    }
    if ((size_t)snprintf(buf, size, "%s/%s", dir, file) >= size) return NULL;
    return buf;
}

#endif

/*
 * args.h - the examples' command lines (header only, not part of the library):
 * each program lists its options, argparse style, with a variable holding the
 * default, and gets --help for free.
 *
 *     int epochs = 5; double lr = 1e-3; const char *opt = "adam", *out = ".";
 *     arg args[] = {{"epochs", 'i', &epochs, "training epochs"},
 *                   {"lr", 'd', &lr, "learning rate"},
 *                   {"optimizer", 's', &opt, "optimizer {sgd|adam}"},
 *                   {"out", 's', &out, "directory for the SVG pictures"}};
 *     int rc = args_parse(argc, argv, "trains a model", args, NARGS(args));
 *     if (rc >= 0) return rc;   // --help printed (0) or a bad option (2)
 *
 * Accepted forms: --name value and --name=value.  Numbers must parse whole;
 * a string option whose help ends with its choices in braces, "{a|b|c}",
 * accepts only those.  args_path builds the paths of the pictures.
 */
#ifndef AGRAD_EXAMPLES_ARGS_H
#define AGRAD_EXAMPLES_ARGS_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct arg {
    const char *name; /* without the leading "--" */
    char type;        /* 'i' int, 'd' double, 's' string, 'f' a flag without a value */
    void *value;      /* int *, double *, const char **, bool *: holds the default, receives the value */
    const char *help; /* a string option's help may end with its choices: "... {a|b|c}" */
} arg;

#define NARGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static inline void args_usage(const char *prog, const char *about, const arg *args, int n) {
    printf("usage: %s [--option value]...\n%s\n\noptions:\n", prog, about);
    for (int i = 0; i < n; i++) {
        char def[256] = "";
        const void *v = args[i].value;
        if (args[i].type == 'i') snprintf(def, sizeof def, " (default: %d)", *(const int *)v);
        else if (args[i].type == 'd') snprintf(def, sizeof def, " (default: %g)", *(const double *)v);
        else if (args[i].type == 'f') def[0] = 0; /* a flag: off unless given */
        else if (**(const char *const *)v) snprintf(def, sizeof def, " (default: %s)", *(const char *const *)v);
        printf("  --%-14s %s%s\n", args[i].name, args[i].help, def);
    }
    printf("  --%-14s %s\n", "help", "show this help and exit");
}

/* Whether value is one of the "{a|b|c}" that help ends with (true when it has none). */
static inline bool args_choice(const char *help, const char *value) {
    const char *c = strchr(help, '{');
    size_t len = strlen(value);
    for (; c && (*c == '{' || *c == '|'); c += 1 + strcspn(c + 1, "|}")) /* c: before each choice */
        if (strncmp(c + 1, value, len) == 0 && (c[len + 1] == '|' || c[len + 1] == '}')) return true;
    return !strchr(help, '{');
}

/* Parses argv into the options.  Returns -1 to go on, 0 after printing --help,
 * 2 after a bad option (with a message on stderr): `if (rc >= 0) return rc;`. */
static inline int args_parse(int argc, char **argv, const char *about, arg *args, int n) {
    for (int a = 1; a < argc; a++) {
        const char *opt = argv[a];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            args_usage(argv[0], about, args, n);
            return 0;
        }
        const char *eq = strchr(opt, '=');
        size_t len = (eq ? (size_t)(eq - opt) : strlen(opt)) - 2; /* of the name */
        int i = strncmp(opt, "--", 2) == 0 ? 0 : n;
        while (i < n && !(strlen(args[i].name) == len && strncmp(opt + 2, args[i].name, len) == 0)) i++;
        if (i == n) {
            fprintf(stderr, "%s: unknown option %s (see --help)\n", argv[0], opt);
            return 2;
        }
        if (args[i].type == 'f') { /* --name sets the flag; it takes no value */
            if (eq) {
                fprintf(stderr, "%s: --%s takes no value\n", argv[0], args[i].name);
                return 2;
            }
            *(bool *)args[i].value = true;
            continue;
        }
        if (!eq && a + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n", argv[0], opt);
            return 2;
        }
        const char *v = eq ? eq + 1 : argv[++a];
        char *end = NULL;
        errno = 0;
        if (args[i].type == 'i') {
            long x = strtol(v, &end, 10);
            if (*end || end == v || errno || x < -1000000000L || x > 1000000000L) goto bad;
            *(int *)args[i].value = (int)x;
        } else if (args[i].type == 'd') {
            double x = strtod(v, &end);
            if (*end || end == v || errno) goto bad;
            *(double *)args[i].value = x;
        } else if (args_choice(args[i].help, v)) {
            *(const char **)args[i].value = v;
        } else {
            fprintf(stderr, "%s: --%s must be one of %s, not %s\n", argv[0], args[i].name, strchr(args[i].help, '{'), v);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "%s: --%s: \"%s\" is not a number\n", argv[0], args[i].name, v);
        return 2;
    }
    return -1;
}

/* dir/file in buf (the directory is created if missing); returns buf, or NULL
 * with a message on stderr. */
static inline const char *args_path(char *buf, size_t size, const char *dir, const char *file) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s: %s\n", dir, strerror(errno));
        return NULL;
    }
    if ((size_t)snprintf(buf, size, "%s/%s", dir, file) >= size) {
        fprintf(stderr, "path too long: %s/%s\n", dir, file);
        return NULL;
    }
    return buf;
}

#endif

/*
 * args.h - the examples' command lines, argparse style: each program lists its
 * options with defaults and help, and reads them by name.
 *
 *     static arg args[] = {{"lr", "1e-3", "learning rate"}, {"opt", "adam", "optimizer {sgd|adam}"}};
 *     int rc = args_parse(argc, argv, "what the program does", args, NARGS(args));
 *     if (rc >= 0) return rc;          // --help printed (0) or a bad option (2)
 *     double lr = arg_num(args, NARGS(args), "lr");
 *
 * Accepted forms: --name value and --name=value.  An option whose help ends
 * with its choices in braces, "{a|b|c}", accepts only those.  Not part of the library.
 */
#ifndef AGRAD_EXAMPLES_ARGS_H
#define AGRAD_EXAMPLES_ARGS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct arg {
    const char *name, *value, *help; /* value starts as the default */
} arg;

#define NARGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static arg *arg_find(arg *args, int n, const char *name, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(args[i].name) == len && strncmp(args[i].name, name, len) == 0) return &args[i];
    return NULL;
}

/* Fills the values from argv.  Returns -1 to go on, 0 after printing --help, 2 on a bad option. */
static int args_parse(int argc, char **argv, const char *about, arg *args, int n) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: %s [--option value]...\n%s\n\noptions:\n", argv[0], about);
            for (int k = 0; k < n; k++) printf("  --%-12s %s (default: %s)\n", args[k].name, args[k].help, args[k].value);
            return 0;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a) - 2;
        arg *o = strncmp(a, "--", 2) == 0 ? arg_find(args, n, a + 2, len) : NULL;
        if (!o || (!eq && i + 1 >= argc)) {
            fprintf(stderr, "%s: %s option %s (see --help)\n", argv[0], o ? "missing the value of" : "unknown", a);
            return 2;
        }
        o->value = eq ? eq + 1 : argv[++i];
        const char *c = strchr(o->help, '{'); /* the choices: {a|b|c} */
        size_t vl = strlen(o->value);
        bool found = !c;
        for (; c && *c != '}'; c += strcspn(c + 1, "|}") + 1)
            found |= strncmp(c + 1, o->value, vl) == 0 && (c[vl + 1] == '|' || c[vl + 1] == '}');
        if (!found) {
            fprintf(stderr, "%s: --%s must be one of %s, not %s\n", argv[0], o->name, strchr(o->help, '{'), o->value);
            return 2;
        }
    }
    return -1;
}

static const char *arg_str(arg *args, int n, const char *name) {
    arg *o = arg_find(args, n, name, strlen(name));
    return o ? o->value : "";
}

static double arg_num(arg *args, int n, const char *name) { return strtod(arg_str(args, n, name), NULL); }

#endif

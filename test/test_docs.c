/*
 * The documentation agrees with the code: every code block of
 * docs/tutorial.md is cut verbatim from examples/tutorial_mlp.{c,py} (part 1)
 * or examples/iris_mlp.{c,py} (part 2); every
 * message the library can record (each ag__fail / ag__fail_null format in
 * the library sources listed in meson.build) is quoted in docs/errors.md under its status code, and
 * every status code has a section there.
 * Run with the source root as argument (meson passes it).
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"

static const char *root = ".";

/* The file root/rel in a malloc'ed string, or NULL. */
static char *slurp(const char *rel) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0, got;
    char *s = malloc(cap);
    while (s && (got = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            char *g = realloc(s, cap *= 2);
            if (!g) free(s);
            s = g;
        }
    }
    fclose(f);
    if (s) s[len] = '\0';
    return s;
}

/* Each block fenced with ```lang in md must occur verbatim in one of the n sources. */
static void check_blocks(const char *md, const char *lang, char *const *src, const char *const *names, int n) {
    char fence[32];
    snprintf(fence, sizeof fence, "```%s\n", lang);
    int count = 0;
    for (const char *p = strstr(md, fence); p; p = strstr(p, fence)) {
        const char *body = p + strlen(fence), *end = strstr(body, "\n```");
        if (!end) break;
        size_t len = (size_t)(end - body) + 1; /* with the last newline */
        char *block = malloc(len + 1);
        memcpy(block, body, len);
        block[len] = '\0';
        int line = 1, found = -1;
        for (const char *q = md; q < body; q++) line += *q == '\n';
        for (int i = 0; i < n && found < 0; i++)
            if (src[i] && strstr(src[i], block)) found = i;
        ok(found >= 0, "docs/tutorial.md:%d: the %s block is verbatim in %s", line, lang,
           found >= 0 ? names[found] : "none of the example programs");
        free(block);
        count++;
        p = end + 4;
    }
    ok(count > 0, "docs/tutorial.md has %s blocks (%d)", lang, count);
}

/* One recorded message: its status code and its format string. */
typedef struct message {
    char status[32];
    char *fmt;
} message;

/* Appends the status and format of each ag__fail/ag__fail_null call in text to msgs. */
static int collect_formats(const char *text, message *msgs, int n, int max) {
    for (const char *p = text; (p = strstr(p, "ag__fail")); p++) {
        const char *q = p + strlen("ag__fail");
        if (strncmp(q, "_null", 5) == 0) q += 5;
        if (*q != '(') continue;
        q++;
        while (*q == ' ' || *q == '\n') q++;
        if (strncmp(q, "AG_ERR_", 7) != 0) continue; /* the definitions in error.c */
        char status[32];
        size_t sl = strspn(q, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_");
        if (sl >= sizeof status) continue;
        memcpy(status, q, sl);
        status[sl] = '\0';
        while (*q && *q != ',') q++;
        if (*q) q++;
        char buf[1024];
        size_t len = 0;
        for (;;) { /* adjacent string literals */
            while (*q == ' ' || *q == '\n') q++;
            if (*q != '"') break;
            for (q++; *q && *q != '"'; q++) {
                if (*q == '\\' && q[1]) q++;
                if (len + 1 < sizeof buf) buf[len++] = *q;
            }
            if (*q) q++;
        }
        buf[len] = '\0';
        if (len && n < max) {
            memcpy(msgs[n].status, status, sizeof status);
            msgs[n++].fmt = strdup(buf);
        }
    }
    return n;
}

/* Collects the messages of every library source, as listed in sources = files(...)
 * of the top-level meson.build; returns how many, -1 if meson.build is unreadable. */
static int collect_library(message *msgs, int max) {
    char *build = slurp("meson.build");
    const char *p = build ? strstr(build, "sources = files(") : NULL;
    const char *end = p ? strchr(p, ')') : NULL;
    if (!end) {
        free(build);
        return -1;
    }
    int n = 0;
    for (p = strchr(p, '\''); p && p < end; p = strchr(p + 1, '\'')) {
        const char *q = strchr(p + 1, '\'');
        if (!q || q > end) break;
        char rel[1024];
        snprintf(rel, sizeof rel, "%.*s", (int)(q - p - 1), p + 1);
        char *text = slurp(rel);
        ok(text != NULL, "library source %s is readable", rel);
        if (text) n = collect_formats(text, msgs, n, max);
        free(text);
        p = q;
    }
    free(build);
    return n;
}

static void check_errors_md(void) {
    char *md = slurp("docs/errors.md");
    ok(md != NULL, "docs/errors.md is readable");
    if (!md) return;
    enum { MAX = 4096 };
    static message msgs[MAX];
    int n = collect_library(msgs, MAX);
    ok(n > 50 && n < MAX, "found the library's error messages in the sources of meson.build (%d, room for %d)", n, MAX);
    int missing = 0;
    for (int i = 0; i < n; i++) {
        /* The section "## AG_ERR_X" runs to the next "## " heading. */
        char heading[48], quoted[1100];
        snprintf(heading, sizeof heading, "\n## %.31s\n", msgs[i].status);
        snprintf(quoted, sizeof quoted, "`%s`", msgs[i].fmt);
        const char *sec = strstr(md, heading);
        const char *end = sec ? strstr(sec + 1, "\n## ") : NULL;
        const char *at = sec ? strstr(sec, quoted) : NULL;
        if (!at || (end && at > end)) {
            missing++;
            diag("not under \"## %s\" in docs/errors.md: %s", msgs[i].status, quoted);
        }
        free(msgs[i].fmt);
    }
    ok(missing == 0, "docs/errors.md quotes every error message under its status (%d missing)", missing);

    /* A section per status code of include/agrad/core.h. */
    char *core = slurp("include/agrad/core.h");
    const char *start = core ? strstr(core, "typedef enum ag_status {") : NULL;
    const char *stop = start ? strstr(start, "} ag_status;") : NULL;
    int codes = 0;
    for (const char *p = stop ? strstr(start, "AG_ERR_") : NULL; p && p < stop; p = strstr(p + 1, "AG_ERR_")) {
        char name[64], heading[80];
        size_t l = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_");
        if (l >= sizeof name) continue;
        memcpy(name, p, l);
        name[l] = '\0';
        snprintf(heading, sizeof heading, "\n## %s", name);
        ok(strstr(md, heading) != NULL, "docs/errors.md has a section \"## %s\"", name);
        codes++;
    }
    ok(codes >= 10, "found the status codes in include/agrad/core.h (%d)", codes);
    free(core);
    free(md);
}

int main(int argc, char **argv) {
    if (argc > 1) root = argv[1];
    /* Part 1 of the guide quotes tutorial_mlp, part 2 iris_mlp. */
    const char *c_names[] = {"examples/tutorial_mlp.c", "examples/iris_mlp.c"};
    const char *py_names[] = {"examples/tutorial_mlp.py", "examples/iris_mlp.py"};
    char *md = slurp("docs/tutorial.md"), *c[2], *py[2];
    for (int i = 0; i < 2; i++) {
        c[i] = slurp(c_names[i]);
        py[i] = slurp(py_names[i]);
        ok(c[i] && py[i], "%s and %s are readable from %s", c_names[i], py_names[i], root);
    }
    ok(md != NULL, "docs/tutorial.md is readable");
    if (md) {
        check_blocks(md, "c", c, c_names, 2);
        check_blocks(md, "python", py, py_names, 2);
    }
    free(md);
    for (int i = 0; i < 2; i++) {
        free(c[i]);
        free(py[i]);
    }
    check_errors_md();
    ok(ag_live_tensors() == 0, "no tensor is alive (%ld)", ag_live_tensors());
    return tap_done();
}

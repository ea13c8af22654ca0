/*
 * In-place ops inside a graph against PyTorch: replays each program of
 * test/fixtures/inplace.txt (written by scripts/gen_inplace_fixtures.py, whose
 * docstring gives the format) with agrad's in-place functions and views, in
 * float64, and compares the leaves' gradients with PyTorch's, or checks that
 * backward fails where PyTorch's did (a saved tensor modified in place).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

#define MAX_REGS 32

typedef struct reg {
    char name[16];
    ag_tensor *t;
} reg;

typedef struct prog {
    char name[128];
    reg regs[MAX_REGS];
    int nregs;
    bool failed;       /* an instruction failed: the program is reported and skipped */
    char why[256];
    ag_tensor *loss;
} prog;

static ag_tensor *get(prog *p, const char *name) {
    for (int i = 0; name && i < p->nregs; i++)
        if (strcmp(p->regs[i].name, name) == 0) return p->regs[i].t;
    if (!p->failed) snprintf(p->why, sizeof p->why, "unknown register %s", name ? name : "(none)");
    p->failed = true;
    return NULL;
}

static void set(prog *p, const char *name, ag_tensor *t) {
    if (!t || !name || p->nregs == MAX_REGS) {
        if (!p->failed) snprintf(p->why, sizeof p->why, "making %s: %s", name ? name : "?", ag_last_error());
        p->failed = true;
        return;
    }
    snprintf(p->regs[p->nregs].name, sizeof p->regs[0].name, "%s", name);
    p->regs[p->nregs++].t = t;
}

static double num(const char *s) { return s ? strtod(s, NULL) : NAN; }
static int64_t integer(const char *s) { return s ? strtoll(s, NULL, 10) : 0; }

/* "<ndim> <dims...>" from the next tokens. */
static ag_shape shape_arg(char **save) {
    ag_shape s = {0, {0}};
    s.ndim = (int)integer(strtok_r(NULL, " ", save));
    if (s.ndim < 0 || s.ndim > AG_MAX_DIMS) s.ndim = 0;
    for (int d = 0; d < s.ndim; d++) s.dim[d] = integer(strtok_r(NULL, " ", save));
    return s;
}

/* "<ndim> <dims...> <values...>" as a float64 (or bool) tensor. */
static ag_tensor *tensor_arg(char **save, bool mask) {
    ag_shape s = shape_arg(save);
    ag_tensor *t = ag_empty(s, AG_F64);
    double *v = ag_data(t);
    for (int64_t i = 0; i < ag_numel(t); i++) v[i] = num(strtok_r(NULL, " ", save));
    return mask ? ag_to_dtype(t, AG_BOOL) : t;
}

/* Runs one instruction line; in-place ops must return their tensor. */
static void step(prog *p, char *line) {
    char *save, *op = strtok_r(line, " ", &save);
    char *a0 = strtok_r(NULL, " ", &save);
    if (!op || !a0) return;
    char *a1 = NULL;
    ag_tensor *r = NULL, *t = NULL;
#define NEXT strtok_r(NULL, " ", &save)
    if (strcmp(op, "leaf") == 0) set(p, a0, ag_requires_grad_(tensor_arg(&save, false), true));
    else if (strcmp(op, "const") == 0) set(p, a0, tensor_arg(&save, false));
    else if (strcmp(op, "mask") == 0) set(p, a0, tensor_arg(&save, true));
    else if (strcmp(op, "zeros") == 0) set(p, a0, ag_zeros(shape_arg(&save), AG_F64));
    else if (strcmp(op, "clone") == 0) set(p, a0, ag_clone(get(p, NEXT)));
    else if (strcmp(op, "mul_scalar") == 0) a1 = NEXT, set(p, a0, ag_mul_scalar(get(p, a1), num(NEXT)));
    else if (strcmp(op, "add") == 0) a1 = NEXT, set(p, a0, ag_add(get(p, a1), get(p, NEXT)));
    else if (strcmp(op, "mul") == 0) a1 = NEXT, set(p, a0, ag_mul(get(p, a1), get(p, NEXT)));
    else if (strcmp(op, "slice") == 0) {
        ag_tensor *x = get(p, NEXT);
        int d = (int)integer(NEXT);
        int64_t s = integer(NEXT), e = integer(NEXT);
        set(p, a0, ag_slice(x, d, s, e, integer(NEXT)));
    } else if (strcmp(op, "narrow") == 0) {
        ag_tensor *x = get(p, NEXT);
        int d = (int)integer(NEXT);
        int64_t s = integer(NEXT);
        set(p, a0, ag_narrow(x, d, s, integer(NEXT)));
    } else if (strcmp(op, "select") == 0) {
        ag_tensor *x = get(p, NEXT);
        int d = (int)integer(NEXT);
        set(p, a0, ag_select(x, d, integer(NEXT)));
    } else if (strcmp(op, "transpose") == 0) {
        ag_tensor *x = get(p, NEXT);
        int d = (int)integer(NEXT);
        set(p, a0, ag_transpose(x, d, (int)integer(NEXT)));
    } else if (strcmp(op, "view") == 0) {
        ag_tensor *x = get(p, NEXT);
        set(p, a0, ag_view(x, shape_arg(&save)));
    } else if (strcmp(op, "expand") == 0) {
        ag_tensor *x = get(p, NEXT);
        set(p, a0, ag_expand(x, shape_arg(&save)));
    } else {
        t = get(p, a0);
        if (strcmp(op, "mul_") == 0) r = ag_mul_(t, get(p, NEXT));
        else if (strcmp(op, "add_") == 0) a1 = NEXT, r = ag_add_(t, get(p, a1), num(NEXT));
        else if (strcmp(op, "sub_") == 0) r = ag_sub_(t, get(p, NEXT));
        else if (strcmp(op, "div_") == 0) r = ag_div_(t, get(p, NEXT));
        else if (strcmp(op, "mul_scalar_") == 0) r = ag_mul_scalar_(t, num(NEXT));
        else if (strcmp(op, "add_scalar_") == 0) r = ag_add_scalar_(t, num(NEXT));
        else if (strcmp(op, "relu_") == 0) r = ag_relu_(t);
        else if (strcmp(op, "clamp_") == 0) a1 = NEXT, r = ag_clamp_(t, num(a1), num(NEXT));
        else if (strcmp(op, "masked_fill_") == 0) a1 = NEXT, r = ag_masked_fill_(t, get(p, a1), num(NEXT));
        else if (strcmp(op, "copy_") == 0) r = ag_copy_(t, get(p, NEXT));
        else if (strcmp(op, "fill_") == 0) r = ag_fill_(t, num(NEXT));
        else if (strcmp(op, "zero_") == 0) r = ag_zero_(t);
        else if (!p->failed) snprintf(p->why, sizeof p->why, "unknown instruction %s", op), p->failed = true;
        if (!p->failed && (!r || r != t)) {
            snprintf(p->why, sizeof p->why, "%s %s: %s", op, a0, ag_last_error());
            p->failed = true;
        }
    }
#undef NEXT
}

/* Compares leaf `name`'s gradient with "<ndim> <dims...> <values...>". */
static void check_grad(prog *p, char *rest) {
    char *save, *name = strtok_r(rest, " ", &save);
    ag_tensor *x = get(p, name), *want = tensor_arg(&save, false);
    ag_tensor *g = x ? ag_grad(x) : NULL;
    double worst = x && g ? 0 : INFINITY;
    bool shape_ok = g && ag_numel(g) == ag_numel(want);
    if (g && shape_ok) {
        ag_tensor *c = ag_contiguous(g);
        const double *gv = ag_data(c), *wv = ag_data(want);
        for (int64_t i = 0; i < ag_numel(want); i++) worst = fmax(worst, fabs(gv[i] - wv[i]) / fmax(1, fabs(wv[i])));
    }
    ok(shape_ok && worst <= 1e-12, "%s: d loss/d %s equals PyTorch's (worst relative difference %.3g)", p->name,
       name ? name : "?", worst);
}

static void run_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!ok(f != NULL, "read %s", path)) return;
    char *line = NULL;
    size_t cap = 0;
    prog p;
    int programs = 0;
    bool in_prog = false;
    long live = 0;
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = 0;
        if (line[0] == '#' || !line[0]) continue;
        if (strncmp(line, "prog ", 5) == 0) {
            memset(&p, 0, sizeof p);
            snprintf(p.name, sizeof p.name, "%s", line + 5);
            live = ag_live_tensors();
            ag_scope_begin();
            in_prog = true;
            programs++;
        } else if (!in_prog) {
            continue;
        } else if (strncmp(line, "loss ", 5) == 0) {
            char *save, *out = strtok_r(line + 5, " ", &save), *w = strtok_r(NULL, " ", &save);
            ag_tensor *y = get(&p, out), *wt = get(&p, w);
            if (!p.failed) p.loss = ag_sum(ag_mul(y, wt));
            ok(!p.failed, "%s: the program runs%s%s", p.name, p.failed ? ": " : "", p.failed ? p.why : "");
        } else if (strncmp(line, "error ", 6) == 0) {
            ag_clear_error();
            ag_status st = p.failed || !p.loss ? AG_OK : ag_backward(p.loss);
            ok(st == AG_ERR_GRAPH && strstr(ag_last_error(), "modified by an in-place operation"),
               "%s: backward fails as PyTorch's (%s): %s", p.name, line + 6, ag_last_error());
            p.loss = NULL;
            ag_clear_error();
        } else if (strncmp(line, "grad ", 5) == 0) {
            if (p.loss) {
                ag_status st = ag_backward(p.loss);
                if (!ok(st == AG_OK, "%s: backward runs (%s)", p.name, st ? ag_last_error() : "ok")) p.failed = true;
                p.loss = NULL;
            }
            if (!p.failed) check_grad(&p, line + 5);
        } else if (strcmp(line, "end") == 0) {
            ag_scope_end();
            in_prog = false;
            ok(ag_live_tensors() == live, "%s: nothing left behind", p.name);
        } else if (!p.failed) {
            step(&p, line);
        }
    }
    free(line);
    fclose(f);
    ok(programs >= 20, "%d programs replayed", programs);
}

int main(void) {
    run_file(FIXTURES "/inplace.txt");
    return tap_done();
}

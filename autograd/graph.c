/*
 * graph.c - printing the recorded graph, as text or Graphviz DOT.
 */
#include <stdlib.h>
#include "core/internal.h"
#include "agrad/autograd.h"

/* Calls visit on every node and leaf reachable from root, inputs before users. */
typedef void (*visit_fn)(FILE *f, const ag_tensor *t, void *ud);

static ag_status walk(const ag_tensor *root, FILE *f, visit_fn visit, void *ud) {
    /* Iterative post-order with an explicit stack; visited flags are reset after. */
    size_t cap = 64, n = 0, done_n = 0, done_cap = 64;
    const ag_tensor **stack = malloc(sizeof *stack * cap);
    int *next = malloc(sizeof *next * cap);
    const ag_tensor **done = malloc(sizeof *done * done_cap);
    ag_status st = AG_OK;
    if (!stack || !next || !done) {
        st = ag__fail(AG_ERR_NOMEM, "graph: out of memory");
        goto out;
    }
    stack[n] = root;
    next[n++] = 0;
    ((ag_tensor *)root)->visited = true;
    while (n) {
        const ag_tensor *t = stack[n - 1];
        if (next[n - 1] < t->nin) {
            const ag_tensor *c = t->in[next[n - 1]++];
            if (c && !c->visited) {
                if (n == cap) {
                    cap *= 2;
                    const ag_tensor **s2 = realloc(stack, sizeof *stack * cap);
                    int *n2 = s2 ? realloc(next, sizeof *next * cap) : NULL;
                    if (s2) stack = s2;
                    if (!s2 || !n2) {
                        st = ag__fail(AG_ERR_NOMEM, "graph: out of memory");
                        break;
                    }
                    next = n2;
                }
                ((ag_tensor *)c)->visited = true;
                stack[n] = c;
                next[n++] = 0;
            }
            continue;
        }
        n--;
        visit(f, t, ud);
        if (done_n == done_cap) {
            done_cap *= 2;
            const ag_tensor **d2 = realloc(done, sizeof *done * done_cap);
            if (!d2) {
                st = ag__fail(AG_ERR_NOMEM, "graph: out of memory");
                break;
            }
            done = d2;
        }
        done[done_n++] = t;
    }
    for (size_t i = 0; i < n; i++) ((ag_tensor *)stack[i])->visited = false;
    for (size_t i = 0; i < done_n; i++) ((ag_tensor *)done[i])->visited = false;
out:
    free(stack);
    free(next);
    free(done);
    return st;
}

static const char *label(const ag_tensor *t) {
    if (t->op) return t->op->grad_fn;
    return t->requires_grad ? "leaf (requires_grad)" : "leaf";
}

static void print_node(FILE *f, const ag_tensor *t, void *ud) {
    (void)ud;
    char s[AG_SHAPE_STR];
    fprintf(f, "%p %s %s %s%s", (const void *)t, label(t), ag__tshape(s, t), ag_dtype_name(t->dtype),
            t->graph_freed ? " (freed)" : "");
    if (t->nin) {
        fprintf(f, " <-");
        for (int i = 0; i < t->nin; i++) fprintf(f, " %p", (const void *)t->in[i]);
    }
    fprintf(f, "\n");
}

ag_status ag_graph_print(FILE *f, const ag_tensor *t) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "graph_print", t);
    if (!f || !t) return ag__fail(AG_ERR_ARG, "graph_print: NULL argument");
    return walk(t, f, print_node, NULL);
}

static void dot_node(FILE *f, const ag_tensor *t, void *ud) {
    (void)ud;
    char s[AG_SHAPE_STR];
    const char *style = t->op ? "shape=box" : t->requires_grad ? "shape=ellipse,style=filled,fillcolor=lightblue"
                                                                : "shape=ellipse";
    fprintf(f, "  n%p [%s,label=\"%s\\n%s %s\"];\n", (const void *)t, style, label(t), ag__tshape(s, t),
            ag_dtype_name(t->dtype));
    for (int i = 0; i < t->nin; i++)
        if (t->in[i]) fprintf(f, "  n%p -> n%p;\n", (const void *)t->in[i], (const void *)t);
}

ag_status ag_graph_dot(FILE *f, const ag_tensor *t) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "graph_dot", t);
    if (!f || !t) return ag__fail(AG_ERR_ARG, "graph_dot: NULL argument");
    fprintf(f, "digraph agrad {\n  rankdir=BT;\n");
    ag_status st = walk(t, f, dot_node, NULL);
    fprintf(f, "}\n");
    return st;
}

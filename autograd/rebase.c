/*
 * rebase.c - in-place ops on the tape.
 *
 * A tensor is its own graph node, so an in-place op on y that must be recorded
 * (y requires grad, or its operand does) cannot add a node after y: y's header is
 * the node.  Instead y's node moves into a new hidden header h viewing y's data,
 * which takes over y's op, inputs, saved tensor and attributes, and y is recorded
 * afresh as the in-place op's node with h as input 0.  y's history then reads
 * "old y (h), then the op", and a chain of in-place ops gives a chain of hidden
 * headers.
 *
 * Consumers recorded before the in-place op still name y in their inputs, but
 * they consumed old y.  Each input's version when recorded tells which: a node
 * that recorded y at a version older than the in-place node's own recorded
 * version consumed the history below it.  Backward asks ag__input_as_recorded as
 * it walks the graph and rewrites such an input to the hidden header.  A consumer
 * that saved old y's values then fails the version check, as in PyTorch.
 */
#include <string.h>
#include "autograd/tape.h"

static bool is_inplace_node(const ag_tensor *t) {
    return t->op && (t->op->saves & AG_OP_INPLACE) && t->nin > 0 && t->in[0];
}

void ag__rebase(ag_tensor *t, ag_tensor *h) {
    h->op = t->op;
    h->nin = t->nin;
    if (t->in == t->in_inline) {
        memcpy(h->in_inline, t->in_inline, sizeof h->in_inline);
        h->in = h->in_inline;
    } else {
        h->in = t->in; /* the heap block, versions included, moves as it is */
    }
    memcpy(h->in_version, t->in_version, sizeof h->in_version);
    h->out_version = t->out_version;
    h->saved = t->saved;
    h->attr = t->attr;
    h->where_file = t->where_file;
    h->where_line = t->where_line;
    h->requires_grad = t->requires_grad;
    h->graph_freed = t->graph_freed;
    t->op = NULL;
    t->nin = 0;
    t->in = t->in_inline;
    t->saved = NULL;
    t->graph_freed = false;
    t->where_file = NULL;
}

ag_tensor *ag__input_as_recorded(ag_tensor *t, int i) {
    ag_tensor *c = t->in[i];
    if (!c || !is_inplace_node(c)) return c;
    uint32_t v = ag__in_versions(t)[i];
    ag_tensor *r = c;
    while (is_inplace_node(r) && v < r->out_version) r = r->in[0];
    if (r != c) {
        t->in[i] = ag__retain(r);
        ag__release(c);
    }
    return r;
}

void ag__rewire_operands(ag_tensor *t) {
    ag_tensor *local[64], **v = local;
    size_t cap = 64, n = 0;
    bool complete = true;
    for (int i = 1; i < t->nin; i++) {
        ag_tensor *o = t->in[i];
        if (o && o->op && o != t && !o->visited) {
            o->visited = true;
            v[n++] = o;
        }
    }
    for (size_t top = 0; top < n; top++) {
        ag_tensor *c = v[top];
        for (int i = 0; i < c->nin; i++) {
            ag_tensor *in = ag__input_as_recorded(c, i); /* a consumer of old t now points at its history */
            if (!in || !in->op || in->visited || in == t) continue;
            if (n == cap) {
                ag_tensor **g = ag__alloc(2 * cap * sizeof *g);
                if (!g) { /* out of memory: stop here (backward still rewires lazily) */
                    complete = false;
                    break;
                }
                memcpy(g, v, n * sizeof *g);
                if (v != local) ag__free(v);
                v = g;
                cap *= 2;
            }
            in->visited = true;
            v[n++] = in;
        }
        if (!complete) break;
    }
    for (size_t k = 0; k < n; k++) v[k]->visited = false;
    if (v != local) ag__free(v);
}

bool ag__storage_shared(const ag_tensor *t) {
    long users = 1; /* t */
    for (const ag_tensor *c = t; is_inplace_node(c); c = c->in[0])
        if (c->in[0]->storage == t->storage) users++;
    return t->storage->base || ag__ref_count(&t->storage->refcount) > users;
}

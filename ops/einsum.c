/*
 * einsum.c - contractions written as compositions of registered ops: einsum,
 * tensordot and kron.  Nothing here has an adjoint of its own: each result is
 * built from diagonal, sum, permute, reshape, expand, mul and matmul, whose
 * adjoints carry the gradient (so einsum records MmBackward-style nodes, not
 * PyTorch's single EinsumBackward, with the same gradients).
 *
 * einsum parses the equation into one list of labels per operand (letters, and
 * the dims an ellipsis covers as labels of their own, aligned from the right as
 * broadcasting aligns them), takes the diagonal of a label repeated within an
 * operand, sums away a label nothing else needs, then contracts the operands
 * two at a time: with 3 to EINSUM_DP_MAX operands in the order with the fewest
 * multiply-adds (plan_optimal, dynamic programming over subsets), beyond in a
 * greedy order (always the pair whose result is smallest), each
 * contraction one batched matmul: [batch..., left-only, summed] x [batch...,
 * summed, right-only], with no permute or reshape where the operand already has
 * that layout (then "bij,bjk->bik" is exactly ag_matmul, forward and adjoint).
 * A label of size 1 broadcasts against the other operands' size, as in PyTorch.
 */
#include <string.h>
#include "agrad/ops.h"
#include "core/iter.h"
#include "ops/einsum.h"

/* Labels: 'A'..'Z' are 0..25, 'a'..'z' 26..51 (so their order is ASCII's), then one per
 * dim an ellipsis covers: ELLIPSIS + k for the k-th of them counted from the left of the
 * widest ellipsis. */
enum { LETTERS = 52, ELLIPSIS = 52, LABELS = 52 + AG_MAX_DIMS };

typedef struct term {
    ag_tensor *t;
    int n;                  /* t's ndim */
    int label[AG_MAX_DIMS]; /* the label of each of t's dims */
} term;

static int letter_label(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return 26 + c - 'a';
    return -1;
}
static char label_char(int l) { return l < 26 ? (char)('A' + l) : l < LETTERS ? (char)('a' + l - 26) : '.'; }

/* The parsed equation: each operand's labels as written (ELLIPSIS marks where "..." stood),
 * and the output's (explicit when arrow). */
typedef struct equation {
    int nops;
    int count[AG_MAX_DIMS + 1];               /* labels written per operand (up to 64 each) */
    int written[AG_MAX_DIMS + 1][64];
    bool has_ellipsis[AG_MAX_DIMS + 1];
    bool arrow, out_ellipsis; /* the output is written; it holds "..." (else the ellipsis dims are summed) */
    int nout, out[64];
} equation;

/* Parses eq for n operands; AG_ERR_ARG naming the problem on failure. */
static ag_status parse(const char *eq, int n, equation *e) {
    memset(e, 0, sizeof *e);
    int op = 0;
    bool in_out = false;
    for (const char *p = eq; *p; p++) {
        if (*p == ' ') continue;
        if (*p == ',' && !in_out) {
            if (++op >= n)
                return ag__fail(AG_ERR_ARG, "einsum: more operands were specified in the equation than the %d provided", n);
            continue;
        }
        if (*p == '-' && p[1] == '>' && !in_out) {
            in_out = e->arrow = true;
            p++;
            continue;
        }
        if (*p == '.') {
            if (p[1] != '.' || p[2] != '.')
                return ag__fail(AG_ERR_ARG, "einsum: found a '.' that is not part of an ellipsis ('...') in \"%s\"", eq);
            bool *seen = in_out ? &e->out_ellipsis : &e->has_ellipsis[op];
            if (*seen)
                return ag__fail(AG_ERR_ARG, "einsum: more than one ellipsis ('...') in %s of \"%s\"",
                                in_out ? "the output" : "an operand's subscripts", eq);
            *seen = true;
            p += 2;
        } else if (letter_label(*p) < 0) {
            return ag__fail(AG_ERR_ARG, "einsum: invalid subscript '%c' in \"%s\" (expected letters a-z, A-Z, ',', '->' and '...')",
                            *p, eq);
        }
        int *count = in_out ? &e->nout : &e->count[op];
        if (*count == 64) return ag__fail(AG_ERR_ARG, "einsum: too many subscripts in \"%s\"", eq);
        (in_out ? e->out : e->written[op])[(*count)++] = *p == '.' ? ELLIPSIS : letter_label(*p);
    }
    if (op + 1 < n)
        return ag__fail(AG_ERR_ARG, "einsum: %d operands were provided but the equation specifies %d", n, op + 1);
    e->nops = n;
    return AG_OK;
}

/* Expands operand k's written labels over its dims; AG_ERR_ARG if they do not fit. */
static ag_status expand_labels(const equation *e, int k, const ag_tensor *t, int width, term *out) {
    int letters = e->count[k] - e->has_ellipsis[k];
    if (e->has_ellipsis[k] ? letters > t->ndim : letters != t->ndim)
        return ag__fail(AG_ERR_ARG, "einsum: the number of subscripts in the equation (%d) does not match the number of "
                                    "dims (%d) of operand %d%s",
                        letters, t->ndim, k, e->has_ellipsis[k] ? "" : " and no ellipsis was given");
    int covered = t->ndim - letters, d = 0;
    for (int i = 0; i < e->count[k]; i++) {
        if (e->written[k][i] == ELLIPSIS)
            for (int j = 0; j < covered; j++) out->label[d++] = ELLIPSIS + width - covered + j;
        else out->label[d++] = e->written[k][i];
    }
    out->t = (ag_tensor *)t;
    out->n = t->ndim;
    return AG_OK;
}

/* Takes the diagonal of every label repeated within x (its dims must agree in size). */
static ag_status take_diagonals(term *x, int k) {
    for (int i = 0; i < x->n; i++)
        for (int j = i + 1; j < x->n; j++) {
            if (x->label[i] != x->label[j]) continue;
            if (x->t->shape[i] != x->t->shape[j])
                return ag__fail(AG_ERR_SHAPE, "einsum: subscript %c is repeated for operand %d but the sizes don't match, "
                                              "%lld != %lld",
                                label_char(x->label[i]), k, (long long)x->t->shape[i], (long long)x->t->shape[j]);
            int l = x->label[i];
            if (!(x->t = ag_diagonal(x->t, 0, i, j))) return ag_last_status();
            /* the two dims go, the diagonal comes last */
            int m = 0;
            for (int d = 0; d < x->n; d++)
                if (d != i && d != j) x->label[m++] = x->label[d];
            x->label[m++] = l;
            x->n = m;
            i = -1; /* rescan */
            break;
        }
    return AG_OK;
}

/* How many terms (other than skip_a, skip_b) and the output use each label. */
static void count_uses(const term *terms, const bool *alive, int n, int skip_a, int skip_b, const int *out, int nout,
                       int *uses) {
    memset(uses, 0, sizeof(int) * LABELS);
    for (int k = 0; k < n; k++) {
        if (!alive[k] || k == skip_a || k == skip_b) continue;
        bool seen[LABELS] = {false};
        for (int d = 0; d < terms[k].n; d++)
            if (!seen[terms[k].label[d]]) seen[terms[k].label[d]] = true, uses[terms[k].label[d]]++;
    }
    for (int d = 0; d < nout; d++) uses[out[d]]++;
}

static int find(const term *x, int l) {
    for (int d = 0; d < x->n; d++)
        if (x->label[d] == l) return d;
    return -1;
}

/* Sums away x's labels that other (uses 0) and, for a pair, the partner do not have. */
static ag_status sum_unused(term *x, const term *partner, const int *uses) {
    int dims[AG_MAX_DIMS], nd = 0, m = 0;
    for (int d = 0; d < x->n; d++) {
        int l = x->label[d];
        if (uses[l] == 0 && (!partner || find(partner, l) < 0)) dims[nd++] = d;
        else x->label[m++] = l;
    }
    if (!nd) return AG_OK;
    if (!(x->t = ag_sum_dims(x->t, nd, dims, false))) return ag_last_status();
    x->n = m;
    return AG_OK;
}

/* x's dims put in the order of labels (all of x's, once each). */
static ag_status permute_to(term *x, const int *labels) {
    int perm[AG_MAX_DIMS];
    bool identity = true;
    for (int d = 0; d < x->n; d++) identity &= (perm[d] = find(x, labels[d])) == d;
    if (identity) return AG_OK;
    if (!(x->t = ag_permute(x->t, perm))) return ag_last_status();
    memcpy(x->label, labels, sizeof(int) * (size_t)x->n);
    return AG_OK;
}

/* x, or x reshaped when its shape is not already s. */
static ag_tensor *reshape_if_needed(ag_tensor *x, ag_shape s) {
    if (!x) return NULL;
    bool same = x->ndim == s.ndim;
    for (int d = 0; same && d < s.ndim; d++) same = x->shape[d] == s.dim[d];
    return same ? x : ag_reshape(x, s);
}

/* Contracts a and b into one term, summing the labels shared by both that nothing else uses
 * (uses: the other terms' and the output's). */
static ag_status contract(term *a, term *b, const int *uses, term *out) {
    ag_status st;
    if ((st = sum_unused(a, b, uses)) || (st = sum_unused(b, a, uses))) return st;
    /* broadcast size-1 dims of shared labels against the other operand's size */
    for (int pass = 0; pass < 2; pass++) {
        term *x = pass ? b : a, *y = pass ? a : b;
        ag_shape s = ag_shape_of(x->t);
        bool grow = false;
        for (int d = 0; d < x->n; d++) {
            int e = find(y, x->label[d]);
            if (e < 0 || y->t->shape[e] == s.dim[d]) continue;
            if (s.dim[d] != 1 && y->t->shape[e] != 1)
                return ag__fail(AG_ERR_SHAPE, "einsum: subscript %c has size %lld in one operand and %lld in another "
                                              "(sizes must match or be 1)",
                                label_char(x->label[d]), (long long)s.dim[d], (long long)y->t->shape[e]);
            if (s.dim[d] == 1) s.dim[d] = y->t->shape[e], grow = true;
        }
        if (grow && !(x->t = ag_expand(x->t, s))) return ag_last_status();
    }
    int batch[AG_MAX_DIMS], left[AG_MAX_DIMS], summed[AG_MAX_DIMS], right[AG_MAX_DIMS];
    int nb = 0, nl = 0, ns = 0, nr = 0;
    int64_t B = 1, M = 1, K = 1, N = 1;
    for (int d = 0; d < a->n; d++) {
        int l = a->label[d];
        int64_t size = a->t->shape[d];
        if (find(b, l) < 0) left[nl++] = l, M *= size;
        else if (uses[l]) batch[nb++] = l, B *= size;
        else summed[ns++] = l, K *= size;
    }
    for (int d = 0; d < b->n; d++)
        if (find(a, b->label[d]) < 0) right[nr++] = b->label[d], N *= b->t->shape[d];
    if (nb + nl + nr > AG_MAX_DIMS)
        return ag__fail(AG_ERR_SHAPE, "einsum: an intermediate result would have %d dims (at most %d)", nb + nl + nr,
                        AG_MAX_DIMS);
    int la[AG_MAX_DIMS], lb[AG_MAX_DIMS], ly[AG_MAX_DIMS];
    ag_shape ys = {nb + nl + nr, {0}};
    memcpy(la, batch, sizeof(int) * (size_t)nb);
    memcpy(la + nb, left, sizeof(int) * (size_t)nl);
    memcpy(la + nb + nl, summed, sizeof(int) * (size_t)ns);
    memcpy(lb, batch, sizeof(int) * (size_t)nb);
    memcpy(lb + nb, summed, sizeof(int) * (size_t)ns);
    memcpy(lb + nb + ns, right, sizeof(int) * (size_t)nr);
    memcpy(ly, la, sizeof(int) * (size_t)(nb + nl));
    memcpy(ly + nb + nl, right, sizeof(int) * (size_t)nr);
    if ((st = permute_to(a, la)) || (st = permute_to(b, lb))) return st;
    for (int d = 0; d < nb + nl; d++) ys.dim[d] = a->t->shape[d];
    for (int d = 0; d < nr; d++) ys.dim[nb + nl + d] = b->t->shape[nb + ns + d];
    /* [batch..., M, K] x [batch..., K, N], the batch dims kept as they are (matmul batches
     * over several), so that an operand already in that shape is not reshaped: a reshape
     * is a view whose adjoint costs a pass over the gradient */
    ag_shape sa = {nb + 2, {0}}, sb = {nb + 2, {0}};
    if (nb + 2 > AG_MAX_DIMS) sa.ndim = sb.ndim = 3, nb = 1, sa.dim[0] = sb.dim[0] = B;
    else
        for (int d = 0; d < nb; d++) sa.dim[d] = sb.dim[d] = a->t->shape[d];
    sa.dim[nb] = M, sa.dim[nb + 1] = K, sb.dim[nb] = K, sb.dim[nb + 1] = N;
    ag_tensor *am = reshape_if_needed(a->t, sa), *bm = am ? reshape_if_needed(b->t, sb) : NULL;
    ag_tensor *y = bm ? reshape_if_needed(ag_matmul(am, bm), ys) : NULL;
    if (!y) return ag_last_status();
    out->t = y;
    out->n = ys.ndim;
    memcpy(out->label, ly, sizeof(int) * (size_t)ys.ndim);
    return AG_OK;
}

/* The number of elements of the term contracting a and b would give (labels that the
 * other terms or the output use, or that only one of the two has). */
static double pair_size(const term *a, const term *b, const int *uses) {
    double size = 1;
    for (int d = 0; d < a->n; d++) {
        int e = find(b, a->label[d]);
        int64_t s = a->t->shape[d];
        if (e >= 0 && b->t->shape[e] > s) s = b->t->shape[e];
        if (e < 0 || uses[a->label[d]]) size *= (double)s;
    }
    for (int d = 0; d < b->n; d++)
        if (find(a, b->label[d]) < 0) size *= (double)b->t->shape[d];
    return size;
}

/* ---- the contraction order ---------------------------------------------------------------------- */
/* A set of labels (LABELS <= 128). */
typedef struct lset {
    uint64_t w[2];
} lset;
static void lset_add(lset *s, int l) { s->w[l >> 6] |= (uint64_t)1 << (l & 63); }
static bool lset_has(lset s, int l) { return s.w[l >> 6] >> (l & 63) & 1; }
static lset lset_or(lset a, lset b) { return (lset){{a.w[0] | b.w[0], a.w[1] | b.w[1]}}; }
static lset lset_and(lset a, lset b) { return (lset){{a.w[0] & b.w[0], a.w[1] & b.w[1]}}; }

/* The elements of a term with labels s: the product of their sizes. */
static double lset_size(lset s, const double *size) {
    double p = 1;
    for (int l = 0; l < LABELS; l++)
        if (lset_has(s, l)) p *= size[l];
    return p;
}

/* The multiply-adds of contracting terms with labels a and b: one per combination of all their
 * labels (batch·M·K·N of the matmul). */
static double pair_flops(lset a, lset b, const double *size) { return lset_size(lset_or(a, b), size); }

/* Finds the order of contractions of the n terms (3 <= n <= EINSUM_DP_MAX) with the fewest
 * multiply-adds in all, ties to the smaller sum of intermediate sizes, by dynamic programming
 * over subsets of the terms (opt_einsum's "dp"/"optimal"): the best way to contract a subset S
 * is the best over its splits into two, each contracted its best way, then the two together;
 * what S's result keeps is its labels that a term outside S or the output has.  split[S] is
 * the chosen split's first half (S's bits); the cost in *flops. */
static void plan_optimal(const lset *labels, int n, lset out, const double *size, uint16_t *split, double *flops) {
    const unsigned full = (1u << n) - 1;
    static _Thread_local lset keep[1u << EINSUM_DP_MAX];
    static _Thread_local double cost[1u << EINSUM_DP_MAX], inter[1u << EINSUM_DP_MAX];
    for (unsigned s = 1; s <= full; s++) {
        lset in = {{0, 0}}, outside = out;
        for (int k = 0; k < n; k++) {
            if (s >> k & 1) in = lset_or(in, labels[k]);
            else outside = lset_or(outside, labels[k]);
        }
        keep[s] = lset_and(in, outside);
        cost[s] = inter[s] = 0;
        split[s] = 0;
        if (!(s & (s - 1))) continue; /* one term: nothing to contract */
        double kept = lset_size(keep[s], size);
        for (unsigned a = (s - 1) & s; a; a = (a - 1) & s) {
            unsigned b = s ^ a;
            if (a > b) continue; /* each split once */
            double c = cost[a] + cost[b] + pair_flops(keep[a], keep[b], size), m = inter[a] + inter[b] + kept;
            if (!split[s] || c < cost[s] || (c == cost[s] && m < inter[s])) cost[s] = c, inter[s] = m, split[s] = (uint16_t)a;
        }
    }
    *flops = cost[full];
}

/* The labels of a term. */
static lset term_labels(const term *t) {
    lset s = {{0, 0}};
    for (int d = 0; d < t->n; d++) lset_add(&s, t->label[d]);
    return s;
}

/* Contracts terms[ia] and terms[ib] into terms[next] (uses: the labels the other terms or the
 * output need), recording the step. */
static ag_status contract_step(term *terms, int ia, int ib, int next, const int *uses, const double *size,
                               ag_einsum_plan *plan) {
    plan->flops += pair_flops(term_labels(&terms[ia]), term_labels(&terms[ib]), size);
    plan->pair[plan->steps][0] = ia, plan->pair[plan->steps][1] = ib, plan->steps++;
    return contract(&terms[ia], &terms[ib], uses, &terms[next]);
}

/* What the optimal plan's execution reads. */
typedef struct planner {
    term *terms;
    int n, next;                 /* operands; the slot of the next result */
    const uint16_t *split;       /* plan_optimal's */
    const lset *labels;          /* each operand's labels */
    const int *out;
    int nout;
    const double *size;
    ag_einsum_plan *plan;
} planner;

/* Contracts the operands in set s as the plan splits it; *id the slot of the result. */
static ag_status run_plan(planner *p, unsigned s, int *id) {
    if (!(s & (s - 1))) { /* one operand */
        int k = 0;
        while (!(s >> k & 1)) k++;
        *id = k;
        return AG_OK;
    }
    int ia, ib;
    ag_status st;
    if ((st = run_plan(p, p->split[s], &ia)) || (st = run_plan(p, s ^ p->split[s], &ib))) return st;
    int uses[LABELS] = {0};
    for (int k = 0; k < p->n; k++)
        for (int l = 0; !(s >> k & 1) && l < LABELS; l++) uses[l] += lset_has(p->labels[k], l);
    for (int d = 0; d < p->nout; d++) uses[p->out[d]]++;
    *id = p->next++;
    return contract_step(p->terms, ia, ib, *id, uses, p->size, p->plan);
}

static ag_status einsum_body(const char *eq, ag_tensor *const *operands, int n, bool greedy, ag_einsum_plan *plan,
                              ag_tensor **result) {
    equation e;
    ag_status st = parse(eq, n, &e);
    if (st) return st;
    int width = 0;
    for (int k = 0; k < n; k++) {
        int covered = operands[k]->ndim - (e.count[k] - e.has_ellipsis[k]);
        if (e.has_ellipsis[k] && covered > width) width = covered;
    }
    term terms[2 * (AG_MAX_DIMS + 1)]; /* the operands, then the contractions' results */
    bool alive[AG_MAX_DIMS + 1];
    bool in_input[LABELS] = {false};
    for (int k = 0; k < n; k++) {
        if ((st = expand_labels(&e, k, operands[k], width, &terms[k])) || (st = take_diagonals(&terms[k], k))) return st;
        alive[k] = true;
        for (int d = 0; d < terms[k].n; d++) in_input[terms[k].label[d]] = true;
    }
    /* the output's labels: as written (the ellipsis expanded), or the ellipsis dims then the
     * letters used exactly once, in ASCII order */
    int out[LABELS], nout = 0;
    if (e.arrow) {
        bool seen[LABELS] = {false};
        for (int i = 0; i < e.nout; i++) {
            int l = e.out[i];
            if (l == ELLIPSIS) {
                for (int j = 0; j < width; j++) out[nout++] = ELLIPSIS + j;
                continue;
            }
            if (seen[l])
                return ag__fail(AG_ERR_ARG, "einsum: output subscript %c appears more than once in the output", label_char(l));
            if (!in_input[l])
                return ag__fail(AG_ERR_ARG, "einsum: output subscript %c does not appear in the equation for any input operand",
                                label_char(l));
            seen[l] = true;
            out[nout++] = l;
        }
    } else {
        int times[LABELS] = {0};
        for (int k = 0; k < n; k++)
            for (int i = 0; i < e.count[k]; i++)
                if (e.written[k][i] != ELLIPSIS) times[e.written[k][i]]++;
        for (int j = 0; j < width; j++) out[nout++] = ELLIPSIS + j;
        for (int l = 0; l < LETTERS; l++)
            if (times[l] == 1) out[nout++] = l;
    }
    if (nout > AG_MAX_DIMS) return ag__fail(AG_ERR_SHAPE, "einsum: the output would have %d dims (at most %d)", nout, AG_MAX_DIMS);
    int uses[LABELS];
    for (int k = 0; k < n; k++) { /* sum away what no other operand nor the output has */
        count_uses(terms, alive, n, k, -1, out, nout, uses);
        if ((st = sum_unused(&terms[k], NULL, uses))) return st;
    }
    /* each label's size (the largest, where a size-1 dim broadcasts) */
    double size[LABELS];
    for (int l = 0; l < LABELS; l++) size[l] = 1;
    for (int k = 0; k < n; k++)
        for (int d = 0; d < terms[k].n; d++)
            if ((double)terms[k].t->shape[d] > size[terms[k].label[d]]) size[terms[k].label[d]] = (double)terms[k].t->shape[d];
    memset(plan, 0, sizeof *plan);
    int last = 0; /* the slot of the final term */
    if (n >= 3 && n <= EINSUM_DP_MAX && !greedy) {
        lset labels[EINSUM_DP_MAX], outs = {{0, 0}};
        uint16_t split[1u << EINSUM_DP_MAX];
        double planned;
        for (int k = 0; k < n; k++) labels[k] = term_labels(&terms[k]);
        for (int d = 0; d < nout; d++) lset_add(&outs, out[d]);
        plan_optimal(labels, n, outs, size, split, &planned);
        planner p = {terms, n, n, split, labels, out, nout, size, plan};
        plan->optimal = true;
        if ((st = run_plan(&p, (1u << n) - 1, &last))) return st;
    } else {
        int slot[AG_MAX_DIMS + 1]; /* where the term now at k is in terms[] */
        for (int k = 0; k < n; k++) slot[k] = k;
        for (int left = n, next = n; left > 1; left--, next++) {
            int bi = -1, bj = -1;
            double best = 0;
            for (int i = 0; i < n; i++)
                for (int j = i + 1; alive[i] && j < n; j++) {
                    if (!alive[j]) continue;
                    count_uses(terms, alive, n, i, j, out, nout, uses);
                    double size_ij = pair_size(&terms[slot[i]], &terms[slot[j]], uses);
                    if (bi < 0 || size_ij < best) bi = i, bj = j, best = size_ij;
                }
            count_uses(terms, alive, n, bi, bj, out, nout, uses);
            if ((st = contract_step(terms, slot[bi], slot[bj], next, uses, size, plan))) return st;
            terms[bi] = terms[next]; /* count_uses reads the live terms at 0..n-1 */
            slot[bi] = next;
            alive[bj] = false;
        }
        last = slot[0];
    }
    term *r = &terms[last];
    memset(uses, 0, sizeof uses); /* only the output is left to need labels */
    for (int d = 0; d < nout; d++) uses[out[d]]++;
    if ((st = sum_unused(r, NULL, uses))) return st;
    /* an output label a size-1 dim broadcast against nothing keeps its size; permute to the output's order */
    if ((st = permute_to(r, out))) return st;
    *result = r->t;
    return AG_OK;
}

ag_tensor *ag__einsum_planned(const char *equation, ag_tensor *const *operands, int n, bool greedy,
                              ag_einsum_plan *plan) {
    if (!equation) return ag__fail_null(AG_ERR_ARG, "einsum: the equation is NULL");
    if (n < 1 || n > AG_MAX_DIMS + 1 || !operands)
        return ag__fail_null(AG_ERR_ARG, "einsum: expects 1 to %d operands, got %d", AG_MAX_DIMS + 1, n);
    AG_CHECK_HANDLE_ARRAY(NULL, "einsum", operands, n);
    for (int k = 0; k < n; k++)
        if (!operands[k]) return NULL;
    for (int k = 1; k < n; k++)
        if (operands[k]->dtype != operands[0]->dtype)
            return ag__fail_null(AG_ERR_DTYPE, "einsum: operand %d is %s but operand 0 is %s (convert one with ag_to_dtype)",
                                 k, ag_dtype_name(operands[k]->dtype), ag_dtype_name(operands[0]->dtype));
    if (ag__composite_begin("einsum")) return NULL;
    ag_tensor *y = NULL;
    if (einsum_body(equation, operands, n, greedy, plan, &y)) y = NULL;
    /* a result that is an operand itself ("ij") or a view of one: einsum returns a new tensor */
    for (int k = 0; y && k < n; k++)
        if (y == operands[k] || y->storage == operands[k]->storage) y = ag_clone(y);
    return ag__composite_end(y);
}

ag_tensor *ag_einsum(const char *equation, ag_tensor *const *operands, int n) {
    ag_einsum_plan plan;
    return ag__einsum_planned(equation, operands, n, false, &plan);
}

/* ---- tensordot, kron -------------------------------------------------------------------------- */
ag_tensor *ag_tensordot(ag_tensor *a, ag_tensor *b, int ndims, const int *dims_a, const int *dims_b) {
    AG_CHECK_HANDLES(NULL, "tensordot", a, b);
    if (!a || !b) return NULL;
    const char *op = "tensordot";
    if (ag__check_float(op, a, b)) return NULL;
    int da[AG_MAX_DIMS], db[AG_MAX_DIMS];
    if (ndims < 0 || ndims > a->ndim || ndims > b->ndim)
        return ag__fail_null(AG_ERR_ARG, "%s: cannot contract %d dims of tensors of %d and %d dims", op, ndims, a->ndim, b->ndim);
    if ((dims_a == NULL) != (dims_b == NULL))
        return ag__fail_null(AG_ERR_ARG, "%s: give both dim lists or neither", op);
    bool used_a[AG_MAX_DIMS] = {false}, used_b[AG_MAX_DIMS] = {false};
    for (int k = 0; k < ndims; k++) {
        da[k] = dims_a ? ag__dim(op, dims_a[k], a->ndim) : a->ndim - ndims + k;
        db[k] = dims_b ? ag__dim(op, dims_b[k], b->ndim) : k;
        if (da[k] < 0 || db[k] < 0) return NULL;
        if (used_a[da[k]] || used_b[db[k]])
            return ag__fail_null(AG_ERR_ARG, "%s: dim %d appears twice in the dims of %s", op,
                                 used_a[da[k]] ? da[k] : db[k], used_a[da[k]] ? "a" : "b");
        used_a[da[k]] = used_b[db[k]] = true;
        if (a->shape[da[k]] != b->shape[db[k]])
            return ag__fail_null(AG_ERR_SHAPE, "%s: contracted dimensions need to match, but a has size %lld in dim %d and "
                                               "b has size %lld in dim %d",
                                 op, (long long)a->shape[da[k]], da[k], (long long)b->shape[db[k]], db[k]);
    }
    if (a->ndim + b->ndim - 2 * ndims > AG_MAX_DIMS)
        return ag__fail_null(AG_ERR_SHAPE, "%s: the result would have %d dims (at most %d)", op,
                             a->ndim + b->ndim - 2 * ndims, AG_MAX_DIMS);
    int pa[AG_MAX_DIMS], pb[AG_MAX_DIMS], na = 0, nb = 0;
    ag_shape ys = {0, {0}};
    int64_t M = 1, K = 1, N = 1;
    for (int d = 0; d < a->ndim; d++)
        if (!used_a[d]) pa[na++] = d, M *= a->shape[d], ys.dim[ys.ndim++] = a->shape[d];
    for (int k = 0; k < ndims; k++) pa[na++] = da[k], K *= a->shape[da[k]], pb[nb++] = db[k];
    for (int d = 0; d < b->ndim; d++)
        if (!used_b[d]) pb[nb++] = d, N *= b->shape[d], ys.dim[ys.ndim++] = b->shape[d];
    if (ag__composite_begin(op)) return NULL;
    ag_tensor *am = ag_reshape(ag_permute(a, pa), AG_SHAPE(M, K));
    ag_tensor *bm = am ? ag_reshape(ag_permute(b, pb), AG_SHAPE(K, N)) : NULL;
    return ag__composite_end(bm ? ag_reshape(ag_matmul(am, bm), ys) : NULL);
}

ag_tensor *ag_kron(ag_tensor *a, ag_tensor *b) {
    AG_CHECK_HANDLES(NULL, "kron", a, b);
    if (!a || !b) return NULL;
    const char *op = "kron";
    if (ag__check_float(op, a, b)) return NULL;
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    if (2 * n > AG_MAX_DIMS)
        return ag__fail_null(AG_ERR_SHAPE, "%s: tensors of %d dims are beyond the %d this composite handles", op, n,
                             AG_MAX_DIMS / 2);
    /* a as [a0, 1, a1, 1, ...], b as [1, b0, 1, b1, ...]: their product is [a0, b0, a1, b1, ...] */
    ag_shape sa = {2 * n, {0}}, sb = {2 * n, {0}}, sy = {n, {0}};
    for (int d = 0; d < n; d++) {
        int64_t ad = d < n - a->ndim ? 1 : a->shape[d - (n - a->ndim)];
        int64_t bd = d < n - b->ndim ? 1 : b->shape[d - (n - b->ndim)];
        sa.dim[2 * d] = ad, sa.dim[2 * d + 1] = 1;
        sb.dim[2 * d] = 1, sb.dim[2 * d + 1] = bd;
        if (ag__mul_overflow(ad, bd, &sy.dim[d]))
            return ag__fail_null(AG_ERR_SHAPE, "%s: the result's dim %d would overflow", op, d);
    }
    if (ag__check_alloc(op, n, sy.dim, a->dtype)) return NULL;
    if (ag__composite_begin(op)) return NULL;
    return ag__composite_end(ag_reshape(ag_mul(ag_reshape(a, sa), ag_reshape(b, sb)), sy));
}

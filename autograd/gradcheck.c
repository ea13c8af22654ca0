/*
 * gradcheck.c - comparing backward's gradients with central finite differences.
 *
 * ag_gradcheck builds the full Jacobian both ways: one backward per output
 * element (one-hot grad_out, graph retained) and two evaluations per input
 * element.  ag_gradcheck_random compares one random directional derivative
 * for models too large for that.  Inputs are perturbed in place and restored
 * bit for bit; their existing .grad is kept aside and put back.
 */
#include <math.h>
#include <string.h>
#include "core/iter.h"
#include "agrad/autograd.h"

static void defaults(const ag_gradcheck_opts *in, ag_gradcheck_opts *o) {
    *o = (ag_gradcheck_opts){1e-6, 1e-5, 1e-3, false};
    if (!in) return;
    if (in->eps > 0) o->eps = in->eps;
    if (in->atol > 0) o->atol = in->atol;
    if (in->rtol > 0) o->rtol = in->rtol;
    o->quiet = in->quiet;
}

/* Storage offset of the k-th element of t in row-major order. */
static int64_t offset_of(const ag_tensor *t, int64_t k) {
    int64_t off = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (k % t->shape[d]) * t->stride[d];
        k /= t->shape[d];
    }
    return off;
}

/* Evaluates fn without recording and copies its values (as double) into out[m]. */
static ag_status eval_values(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, double *out, int64_t m) {
    ag_status st = ag_scope_begin();
    if (st) return st;
    ag_no_grad_begin();
    ag_tensor *y = fn(inputs, n, ctx);
    ag_no_grad_end();
    if (!y) st = ag_last_status() ? ag_last_status() : AG_ERR_ARG;
    else if (ag_numel(y) != m) st = ag__fail(AG_ERR_SHAPE, "gradcheck: the function's output size changed between calls");
    else st = ag_copy_to(y, out, m, AG_F64);
    ag_scope_end();
    return st;
}

typedef struct checked_input {
    ag_tensor *t;
    ag_tensor *saved_grad;
} checked_input;

static void stash_grads(ag_tensor *const *inputs, int n, checked_input *ci) {
    for (int i = 0; i < n; i++) {
        ci[i].t = inputs[i];
        ci[i].saved_grad = inputs[i] ? inputs[i]->grad : NULL;
        if (inputs[i]) inputs[i]->grad = NULL;
    }
}

static void restore_grads(checked_input *ci, int n) {
    for (int i = 0; i < n; i++) {
        if (!ci[i].t) continue;
        ag_release(ci[i].t->grad);
        ci[i].t->grad = ci[i].saved_grad;
    }
}

ag_status ag_gradcheck(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, const ag_gradcheck_opts *opts_in,
                       ag_gradcheck_report *report) {
    ag_gradcheck_opts o;
    defaults(opts_in, &o);
    ag_gradcheck_report rep = {-1, 0, 0, 0, 0, -INFINITY, 0};
    if (!fn || (n > 0 && !inputs) || n < 0 || n > 64) return ag__fail(AG_ERR_ARG, "gradcheck: invalid arguments");
    for (int i = 0; i < n; i++)
        if (!inputs[i]) return ag__fail(AG_ERR_ARG, "gradcheck: input %d is NULL", i);
    AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, "gradcheck", inputs, n);

    checked_input ci[64];
    stash_grads(inputs, n, ci);
    ag_status st = ag_scope_begin();
    if (st) {
        restore_grads(ci, n);
        return st;
    }
    double *analytic = NULL, *plus = NULL, *minus = NULL;
    ag_tensor *out = fn(inputs, n, ctx);
    int64_t m = out ? ag_numel(out) : 0;
    int64_t total = 0, cells = -1; /* cells: m * total + 1, -1 when it overflows (expanded inputs) */
    bool overflow = false;
    for (int i = 0; i < n; i++)
        if (inputs[i]->requires_grad) overflow |= ag__add_overflow(total, ag_numel(inputs[i]), &total);
    if (!out) {
        st = ag_last_status() ? ag_last_status() : AG_ERR_ARG;
        goto done;
    }
    if (!overflow && !ag__mul_overflow(m, total, &cells)) cells++;
    analytic = ag__alloc_n(cells, sizeof(double));
    if (analytic) memset(analytic, 0, sizeof(double) * (size_t)cells);
    plus = ag__alloc_n(m + 1, sizeof(double));
    minus = ag__alloc_n(m + 1, sizeof(double));
    if (!analytic || !plus || !minus) {
        st = AG_ERR_NOMEM;
        goto done;
    }

    /* Analytic Jacobian, one row per output element. */
    if (out->requires_grad) {
        ag_tensor *seed = ag_zeros(ag_shape_of(out), out->dtype);
        if (!seed) {
            st = AG_ERR_NOMEM;
            goto done;
        }
        for (int64_t j = 0; j < m; j++) {
            ag__write(seed, j, 1.0);
            for (int i = 0; i < n; i++) ag_zero_grad(inputs[i]);
            st = ag_backward_ex(out, seed, true);
            ag__write(seed, j, 0.0);
            if (st) goto done;
            int64_t col = 0;
            for (int i = 0; i < n; i++) {
                if (!inputs[i]->requires_grad) continue;
                ag_tensor *g = inputs[i]->grad;
                int64_t k_n = ag_numel(inputs[i]);
                for (int64_t k = 0; g && k < k_n; k++) analytic[j * total + col + k] = ag__read(g, offset_of(g, k));
                col += k_n;
            }
        }
    }

    /* Numeric Jacobian, one column per input element, compared as it comes. */
    int64_t col = 0;
    for (int i = 0; i < n && st == AG_OK; i++) {
        ag_tensor *x = inputs[i];
        if (!x->requires_grad) continue;
        int64_t k_n = ag_numel(x);
        for (int64_t k = 0; k < k_n && st == AG_OK; k++) {
            int64_t off = offset_of(x, k);
            double v = ag__read(x, off);
            ag__write(x, off, v + o.eps);
            st = eval_values(fn, ctx, inputs, n, plus, m);
            ag__write(x, off, v - o.eps);
            if (!st) st = eval_values(fn, ctx, inputs, n, minus, m);
            ag__write(x, off, v);
            for (int64_t j = 0; j < m && st == AG_OK; j++) {
                double num = (plus[j] - minus[j]) / (2 * o.eps);
                double ana = analytic[j * total + col + k];
                double err = fabs(ana - num) - (o.atol + o.rtol * fabs(num));
                if (isnan(ana) != isnan(num) || (!isnan(num) && isnan(err))) err = INFINITY;
                rep.checked++;
                if (err > rep.error) rep = (ag_gradcheck_report){i, k, j, ana, num, err, rep.checked};
            }
        }
        col += k_n;
    }
    if (st == AG_OK && rep.error > 0) {
        st = ag__fail(AG_ERR_VALUE,
                      "gradcheck: Jacobian mismatch for input %d, element %lld, output %lld: analytic %.10g, numeric %.10g "
                      "(|difference| %.3g > atol %.3g + rtol %.3g * |numeric|)",
                      rep.input, (long long)rep.index, (long long)rep.output_index, rep.analytic, rep.numeric,
                      fabs(rep.analytic - rep.numeric), o.atol, o.rtol);
        if (!o.quiet) fprintf(stderr, "%s\n", ag_last_error());
    }
done:
    ag__free(analytic);
    ag__free(plus);
    ag__free(minus);
    ag_scope_end();
    restore_grads(ci, n);
    if (report) *report = rep;
    return st;
}

ag_status ag_gradcheck_random(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, const ag_gradcheck_opts *opts_in,
                              double *rel_error) {
    ag_gradcheck_opts o;
    defaults(opts_in, &o);
    if (!opts_in || opts_in->eps <= 0) o.eps = 1e-4; /* one perturbation of all inputs: a larger step */
    if (!fn || (n > 0 && !inputs) || n < 0 || n > 64) return ag__fail(AG_ERR_ARG, "gradcheck_random: invalid arguments");
    for (int i = 0; i < n; i++)
        if (!inputs[i]) return ag__fail(AG_ERR_ARG, "gradcheck_random: input %d is NULL", i);
    AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, "gradcheck_random", inputs, n);
    checked_input ci[64];
    stash_grads(inputs, n, ci);
    ag_status st = ag_scope_begin();
    if (st) {
        restore_grads(ci, n);
        return st;
    }
    ag_tensor *dirs[64] = {0}, *snaps[64] = {0};
    double analytic = 0, fp = 0, fm = 0;
    double *wv = NULL, *vals = NULL;
    ag_tensor *out = fn(inputs, n, ctx);
    if (!out) {
        st = ag_last_status() ? ag_last_status() : AG_ERR_ARG;
        goto done;
    }
    int64_t m = ag_numel(out);
    /* L = Σ w·out with random weights w, so any output shape reduces to one number. */
    ag_tensor *w = ag_randn(ag_shape_of(out), out->dtype);
    wv = ag__alloc_n(m + 1, sizeof(double));
    vals = ag__alloc_n(m + 1, sizeof(double));
    if (!w || !wv || !vals || (st = ag_copy_to(w, wv, m, AG_F64))) {
        st = st ? st : AG_ERR_NOMEM;
        goto done;
    }
    if (out->requires_grad && (st = ag_backward_ex(out, w, false))) goto done;
    for (int i = 0; i < n; i++) {
        if (!inputs[i]->requires_grad) continue;
        dirs[i] = ag_randn(ag_shape_of(inputs[i]), AG_F64);
        snaps[i] = ag_empty(ag_shape_of(inputs[i]), inputs[i]->dtype);
        if (snaps[i]) ag__copy_into(snaps[i], inputs[i]);
        if (!dirs[i] || !snaps[i]) {
            st = AG_ERR_NOMEM;
            goto done;
        }
        ag_tensor *g = inputs[i]->grad;
        for (int64_t k = 0; g && k < ag_numel(g); k++)
            analytic += ag__read(g, offset_of(g, k)) * ((double *)ag__ptr(dirs[i]))[k];
    }
    for (int sgn = 1; sgn >= -1 && st == AG_OK; sgn -= 2) {
        for (int i = 0; i < n; i++)
            for (int64_t k = 0; dirs[i] && k < ag_numel(inputs[i]); k++) {
                int64_t off = offset_of(inputs[i], k);
                ag__write(inputs[i], off, ag__read(inputs[i], off) + sgn * o.eps * ((double *)ag__ptr(dirs[i]))[k]);
            }
        st = eval_values(fn, ctx, inputs, n, vals, m);
        double f = 0;
        for (int64_t j = 0; j < m; j++) f += wv[j] * vals[j];
        if (sgn == 1) fp = f;
        else fm = f;
        for (int i = 0; i < n; i++) /* restore bit for bit */
            if (dirs[i]) ag__copy_into(inputs[i], snaps[i]);
    }
    if (st == AG_OK) {
        double numeric = (fp - fm) / (2 * o.eps);
        double rel = fabs(analytic - numeric) / fmax(fmax(fabs(analytic), fabs(numeric)), 1e-12);
        if (rel_error) *rel_error = rel;
        if (!(fabs(analytic - numeric) <= o.atol + o.rtol * fabs(numeric))) {
            st = ag__fail(AG_ERR_VALUE, "gradcheck_random: directional derivative %.10g (backward) vs %.10g (finite "
                                        "differences), relative error %.3g", analytic, numeric, rel);
            if (!o.quiet) fprintf(stderr, "%s\n", ag_last_error());
        }
    }
done:
    ag__free(wv);
    ag__free(vals);
    ag_scope_end();
    restore_grads(ci, n);
    return st;
}

/*
 * gradgradcheck.c - second derivatives against finite differences of first
 * derivatives, as torch.autograd.gradgradcheck: ag_gradcheck of the function
 * (inputs, v) -> d<v, fn(inputs)>/d inputs[j], the gradient computed by
 * ag_autograd_grad with create_graph, once for each input j requiring grad.
 */
#include <math.h>
#include "core/internal.h"
#include "agrad/autograd.h"
#include "agrad/ops.h"

typedef struct first_derivative {
    ag_fn fn;
    void *ctx;
    int n;     /* fn's inputs; the checked function has one more, v */
    int which; /* the input whose gradient it returns */
} first_derivative;

/* d<v, fn(inputs)>/d inputs[which], recorded (grad mode on even inside gradcheck's
 * no-grad evaluations, so that the gradient exists); its values when the
 * gradient does not reach the input are zeros. */
static ag_tensor *gradient_of(ag_tensor *const *in, int n, void *ctx) {
    const first_derivative *d = ctx;
    (void)n;
    ag_enable_grad_begin();
    ag_tensor *y = d->fn(in, d->n, d->ctx), *g = NULL;
    ag_tensor *v = in[d->n], *x = in[d->which];
    ag_grad_opts o = {.create_graph = true, .allow_unused = true};
    if (y && y->requires_grad && ag_autograd_grad(&y, 1, &x, 1, &v, &o, &g) == AG_OK && !g) g = ag_zeros_like(x);
    else if (y && !y->requires_grad) g = ag_zeros_like(x);
    ag_enable_grad_end();
    return g;
}

ag_status ag_gradgradcheck(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, const ag_gradcheck_opts *opts,
                           ag_gradcheck_report *report) {
    if (!fn || n < 0 || n > 63 || (n > 0 && !inputs)) return ag__fail(AG_ERR_ARG, "gradgradcheck: invalid arguments");
    AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, "gradgradcheck", inputs, n);
    ag_gradcheck_report worst = {-1, 0, 0, 0, 0, -INFINITY, 0};
    int64_t checked = 0;
    ag_status st = ag_scope_begin();
    if (st) return st;
    ag_no_grad_begin();
    ag_tensor *y = fn(inputs, n, ctx);
    ag_no_grad_end();
    ag_tensor *all[64];
    for (int i = 0; i < n; i++) all[i] = inputs[i];
    if (!y) st = ag_last_status() ? ag_last_status() : AG_ERR_ARG;
    else if (!(all[n] = ag_requires_grad_(ag_randn(ag_shape_of(y), y->dtype), true))) st = AG_ERR_NOMEM;
    for (int j = 0; j < n && st == AG_OK; j++) {
        if (!inputs[j] || !inputs[j]->requires_grad) continue;
        first_derivative d = {fn, ctx, n, j};
        ag_gradcheck_report rep;
        st = ag_gradcheck(gradient_of, &d, all, n + 1, opts, &rep);
        checked += rep.checked;
        if (rep.error > worst.error || worst.input < 0) worst = rep, worst.input = j;
    }
    worst.checked = checked;
    ag_scope_end();
    if (report) *report = worst;
    return st;
}

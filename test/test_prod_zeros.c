/*
 * prod, prod_dim and cumprod at inputs holding zeros, which the registry's test rows
 * never draw: their second derivatives (backward_graph, through ag_gradgradcheck against
 * finite differences of first derivatives) and tangents (the forward-mode Jacobian against
 * the reverse-mode one), with one zero, two zeros and all zeros in a lane; and the Hessian
 * of prod where the gradient vanishes but the Hessian does not (two zeros).
 */
#include <math.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

typedef struct call {
    const char *name;
    int kind; /* 0 prod, 1 prod_dim(dim 1), 2 prod_dim(dim 0, keepdim), 3 cumprod(dim 1), 4 cumprod(dim 0) */
} call;

static ag_tensor *apply(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    switch (((const call *)ctx)->kind) {
    case 0: return ag_prod(in[0]);
    case 1: return ag_prod_dim(in[0], 1, false);
    case 2: return ag_prod_dim(in[0], 0, true);
    case 3: return ag_cumprod(in[0], 1);
    default: return ag_cumprod(in[0], 0);
    }
}

/* The largest |a - b| over two non-empty tensors of one number of elements (INFINITY if
 * either is missing or the counts differ). */
static double max_diff(ag_tensor *a, ag_tensor *b) {
    if (!a || !b || ag_numel(a) != ag_numel(b)) return INFINITY;
    ag_tensor *d = ag_max(ag_abs(ag_sub(ag_reshape(a, ag_shape_of(b)), b)));
    double v = INFINITY;
    if (d) ag_copy_to(d, &v, 1, AG_F64);
    return v;
}

int main(void) {
    /* [3, 4] inputs: row 0 one zero, row 1 two zeros, row 2 none; then all zeros */
    static const double with_zeros[12] = {1.5, 0, -2, 0.5, 0, 3, 0, -1.25, 2, -0.5, 1.5, 0.75};
    static const double all_zero[12] = {0};
    static const call calls[] = {{"prod", 0}, {"prod_dim(1)", 1}, {"prod_dim(0, keepdim)", 2}, {"cumprod(1)", 3},
                                 {"cumprod(0)", 4}};
    const double *inputs[2] = {with_zeros, all_zero};
    const char *labels[2] = {"zeros in some lanes", "all zeros"};
    for (int v = 0; v < 2; v++)
        for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++) {
            ag_scope_begin();
            ag_tensor *x = ag_requires_grad_(ag_from_data(inputs[v], AG_SHAPE(3, 4), AG_F64), true);
            ag_gradcheck_report rep;
            ag_status st = ag_gradgradcheck(apply, (void *)&calls[c], &x, 1, NULL, &rep);
            ok(st == AG_OK, "gradgradcheck %s, %s (%lld entries)%s%s", calls[c].name, labels[v], (long long)rep.checked,
               st ? ": " : "", st ? ag_last_error() : "");
            ag_tensor *jf = NULL, *jr = NULL;
            ag_functional_opts fwd = {.mode = AG_JACOBIAN_FORWARD}, rev = {.mode = AG_JACOBIAN_REVERSE};
            bool got = ag_jacobian(apply, (void *)&calls[c], &x, 1, &fwd, &jf) == AG_OK &&
                       ag_jacobian(apply, (void *)&calls[c], &x, 1, &rev, &jr) == AG_OK;
            double diff = got ? max_diff(jf, jr) : INFINITY;
            ok(diff <= 1e-12, "%s, %s: forward-mode Jacobian = reverse-mode one (max difference %.3g)", calls[c].name,
               labels[v], diff);
            ag_scope_end();
        }

    /* prod of [0, 0, 3, 2]: the gradient is 0, the Hessian H_ij = Π_{k≠i,j} x_k is not */
    ag_scope_begin();
    ag_tensor *x = ag_from_data((double[]){0, 0, 3, 2}, AG_SHAPE(4), AG_F64), *h = NULL;
    const double want[16] = {0, 6, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    ok(ag_hessian(apply, (void *)&calls[0], &x, 1, NULL, &h) == AG_OK &&
           max_diff(h, ag_from_data(want, AG_SHAPE(4, 4), AG_F64)) == 0,
       "the Hessian of prod at two zeros is Π of the others at the zero pair, 0 elsewhere");
    ag_scope_end();
    ok(ag_live_tensors() == 0, "no tensor outlives the checks (%ld live)", ag_live_tensors());
    return tap_done();
}

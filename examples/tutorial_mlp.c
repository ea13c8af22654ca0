/*
 * tutorial_mlp.c - the program of docs/tutorial.md: a 2 -> 8 -> 1 MLP learns
 * XOR with binary cross-entropy and plain SGD, after a gradient check of the
 * model.  Exits 0 when all four points are classified right and nothing leaked.
 */
#include <math.h>
#include <stdio.h>
#include <agrad/agrad.h>

enum { W1, B1, W2, B2, NPARAM };

/* A parameter uniform on [-1/sqrt(fan_in), 1/sqrt(fan_in)], as nn.Linear initialises. */
static ag_tensor *param(ag_shape shape, int fan_in) {
    double k = 1 / sqrt(fan_in);
    return ag_requires_grad_(ag_uniform_(ag_empty(shape, AG_F32), -k, k), true);
}

/* p = sigmoid(W2·tanh(W1·x + b1) + b2) */
static ag_tensor *model(ag_tensor *const *p, ag_tensor *x) {
    ag_tensor *h = ag_tanh(ag_linear(x, p[W1], p[B1]));
    return ag_sigmoid(ag_linear(h, p[W2], p[B2]));
}

/* Binary cross-entropy: -mean(y·log(p) + (1 - y)·log(1 - p)) */
static ag_tensor *bce(ag_tensor *p, ag_tensor *y) {
    ag_tensor *pos = ag_mul(y, ag_log(p));
    ag_tensor *neg = ag_mul(ag_rsub_scalar(1, y), ag_log(ag_rsub_scalar(1, p)));
    return ag_neg(ag_mean(ag_add(pos, neg)));
}

typedef struct batch { ag_tensor *x, *y; } batch;

/* The loss as a function of the parameters, the form ag_gradcheck takes. */
static ag_tensor *loss_fn(ag_tensor *const *params, int n, void *ctx) {
    batch *b = ctx;
    (void)n;
    return bce(model(params, b->x), b->y);
}

int main(void) {
    ag_manual_seed(0);
    ag_scope_begin(); /* owns the data and the parameters */
    float xs[] = {0, 0, 0, 1, 1, 0, 1, 1}, ys[] = {0, 1, 1, 0};
    batch data = {ag_from_data(xs, AG_SHAPE(4, 2), AG_F32), ag_from_data(ys, AG_SHAPE(4, 1), AG_F32)};
    ag_tensor *params[NPARAM] = {param(AG_SHAPE(8, 2), 2), param(AG_SHAPE(8), 2),
                                 param(AG_SHAPE(1, 8), 8), param(AG_SHAPE(1), 8)};

    /* Check backward against finite differences, in float64. */
    ag_tensor *p64[NPARAM];
    for (int i = 0; i < NPARAM; i++) p64[i] = ag_requires_grad_(ag_to_dtype(ag_detach(params[i]), AG_F64), true);
    batch data64 = {ag_to_dtype(data.x, AG_F64), ag_to_dtype(data.y, AG_F64)};
    if (ag_gradcheck(loss_fn, &data64, p64, NPARAM, NULL, NULL)) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    printf("gradcheck passed\n");

    const double lr = 0.5;
    for (int step = 1; step <= 1000; step++) {
        ag_scope_begin(); /* owns this step's temporaries */
        ag_tensor *loss = loss_fn(params, NPARAM, &data);
        if (ag_backward(loss)) return fprintf(stderr, "step %d: %s\n", step, ag_last_error()), 1;
        if (step % 250 == 0) printf("step %4d  loss %.4f\n", step, ag_item(loss));
        ag_no_grad_begin();
        for (int i = 0; i < NPARAM; i++) {
            ag_add_(params[i], ag_grad(params[i]), -lr); /* p -= lr * p.grad */
            ag_zero_grad(params[i]);
        }
        ag_no_grad_end();
        ag_scope_end(); /* frees the step's tensors and its graph */
    }

    ag_no_grad_begin();
    ag_tensor *p = model(params, data.x);
    ag_no_grad_end();
    int correct = 0;
    for (int64_t i = 0; i < 4; i++) {
        double pi = ag_get(p, (int64_t[]){i, 0});
        printf("xor(%g, %g) = %.3f\n", xs[2 * i], xs[2 * i + 1], pi);
        correct += (pi > 0.5) == (ys[i] > 0.5);
    }
    ag_scope_end();
    printf("%d/4 correct, %ld tensors alive\n", correct, ag_live_tensors());
    return correct == 4 && ag_live_tensors() == 0 ? 0 : 1;
}

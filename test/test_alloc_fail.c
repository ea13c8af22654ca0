/*
 * Out-of-memory handling: a small training step runs with an allocator that
 * fails the k-th allocation, for every k until the step needs no more.  Each
 * run must report AG_ERR_NOMEM (or succeed), never crash, and leave no tensor
 * or byte behind once its scope is closed.  The same for cdist's forward and backward by blocks,
 * on one and two threads.
 */
#include <stdlib.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"
#include "failing_alloc.h"


/* One step of a 2-layer MLP: forward, backward, SGD update.  Returns a status. */
static ag_status step(ag_tensor *w1, ag_tensor *b1, ag_tensor *w2, ag_tensor *x, ag_tensor *y) {
    ag_status st = ag_scope_begin();
    if (st) return st;
    ag_tensor *h = ag_tanh(ag_linear(x, w1, b1));
    ag_tensor *out = ag_matmul(h, ag_t(w2));
    ag_tensor *loss = ag_mean(ag_square(ag_sub(out, y)));
    st = loss ? ag_backward(loss) : ag_last_status();
    if (st == AG_OK) {
        ag_no_grad_begin();
        ag_tensor *params[3] = {w1, b1, w2};
        for (int i = 0; i < 3; i++)
            if (ag_grad(params[i]) && !ag_add_(params[i], ag_grad(params[i]), -0.1)) st = ag_last_status();
        ag_no_grad_end();
    }
    for (int i = 0; i < 3; i++) ag_zero_grad((ag_tensor *[]){w1, b1, w2}[i]);
    ag_scope_end();
    return st;
}

/* cdist(a, b).sum() forward and backward, p = 2 by blocks in float32 (ops/distance.c: dist_blocks,
 * ratio_blocks, whose threads' blocks the calling thread makes while a user allocator is installed). */
static ag_status cdist_step(ag_tensor *a, ag_tensor *b) {
    ag_status st = ag_scope_begin();
    if (st) return st;
    ag_tensor *loss = ag_sum(ag_cdist(a, b, 2));
    st = loss ? ag_backward(loss) : ag_last_status();
    ag_zero_grad(a), ag_zero_grad(b);
    ag_scope_end();
    return st;
}

/* Every k-th allocation of a cdist step failed in turn: AG_ERR_NOMEM, no leak, on threads threads. */
static void cdist_fails(int threads) {
    const int old = ag_get_num_threads();
    ag_set_num_threads(threads);
    ag_tensor *a = ag_requires_grad_(ag_randn(AG_SHAPE(600, 8), AG_F32), true);
    ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(300, 8), AG_F32), true);
    long live = ag_live_tensors();
    ag_set_allocator(failing_alloc, NULL);
    fail_at = -1;
    alloc_calls = 0;
    bool first = cdist_step(a, b) == AG_OK;
    const long needed = alloc_calls;
    int wrong = 0;
    for (long k = 1; k <= needed; k++) {
        fail_at = k;
        alloc_calls = 0;
        long blocks = live_blocks;
        ag_clear_error();
        ag_status st = cdist_step(a, b);
        wrong += st != AG_ERR_NOMEM || ag_live_tensors() != live || live_blocks != blocks;
    }
    fail_at = -1;
    ok(first && wrong == 0 && cdist_step(a, b) == AG_OK,
       "cdist by blocks on %d thread(s): each of its %ld allocations failing gives AG_ERR_NOMEM, without leaks (%d wrong)",
       threads, needed, wrong);
    ag_set_allocator(NULL, NULL);
    ag_release(a);
    ag_release(b);
    ag_set_num_threads(old);
}

int main(void) {
    ag_manual_seed(7);
    ag_tensor *w1 = ag_requires_grad_(ag_randn(AG_SHAPE(8, 4), AG_F32), true);
    ag_tensor *b1 = ag_requires_grad_(ag_zeros(AG_SHAPE(8), AG_F32), true);
    ag_tensor *w2 = ag_requires_grad_(ag_randn(AG_SHAPE(3, 8), AG_F32), true);
    ag_tensor *x = ag_randn(AG_SHAPE(5, 4), AG_F32);
    ag_tensor *y = ag_randn(AG_SHAPE(5, 3), AG_F32);
    long live = ag_live_tensors();

    /* How many allocations does one step make? */
    ag_set_allocator(failing_alloc, NULL);
    fail_at = -1;
    alloc_calls = 0;
    ok(step(w1, b1, w2, x, y) == AG_OK, "a step succeeds with a counting allocator");
    long needed = alloc_calls;
    diag("one step makes %ld allocations", needed);

    int crashed_or_wrong = 0, nomem = 0;
    for (long k = 1; k <= needed; k++) {
        fail_at = k;
        alloc_calls = 0;
        long blocks = live_blocks;
        ag_clear_error();
        ag_status st = step(w1, b1, w2, x, y);
        if (st != AG_OK && st != AG_ERR_NOMEM) {
            crashed_or_wrong++;
            diag("failing allocation %ld gave status %d: %s", k, st, ag_last_error());
        }
        if (st == AG_ERR_NOMEM) nomem++;
        if (st == AG_OK) diag("failing allocation %ld went unnoticed", k);
        if (ag_live_tensors() != live || live_blocks != blocks) {
            crashed_or_wrong++;
            diag("failing allocation %ld leaked: %ld tensors, %ld blocks", k, ag_live_tensors() - live,
                 live_blocks - blocks);
        }
    }
    ok(crashed_or_wrong == 0, "every failing allocation (1..%ld) gives AG_ERR_NOMEM or success, without leaks", needed);
    ok(nomem == needed, "every failure is reported as out of memory (%d of %ld)", nomem, needed);
    fail_at = -1;
    ok(step(w1, b1, w2, x, y) == AG_OK, "a step succeeds again afterwards");
    ag_release(w1);
    ag_release(b1);
    ag_release(w2);
    ag_release(x);
    ag_release(y);
    ag_set_allocator(NULL, NULL);
    cdist_fails(1);
    cdist_fails(2);
    ok(ag_live_tensors() == 0, "nothing leaked (%ld live tensors)", ag_live_tensors());
    return tap_done();
}

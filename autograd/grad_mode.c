/*
 * grad_mode.c - grad mode and inference mode on this thread: torch.no_grad,
 * torch.enable_grad, torch.set_grad_enabled and torch.inference_mode.
 *
 * The state is two flags: grad mode off (ag__no_grad_depth non-zero, read by
 * ag__needs_grad on every op) and inference mode on (ag__inference_mode, in core/
 * because tensor creation marks inference tensors).  Each *_begin pushes the two
 * flags it found on a per-thread stack and its *_end pops them back, so regions
 * nest like Python's with-blocks whatever ag_set_grad_enabled did inside them.
 * Equal neighbours on the stack are counted rather than repeated (no-grad inside
 * no-grad pushes nothing new), so only MODE_RUNS changes of state can nest.
 */
#include "autograd/tape.h"
#include "agrad/autograd.h"

_Thread_local int ag__no_grad_depth;

/* What a begin saves and its end restores. */
enum { SAVED_NO_GRAD = 1, SAVED_INFERENCE = 2 };

typedef struct saved_run {
    unsigned state;  /* SAVED_* bits */
    uint32_t count;  /* begins in a row that found this state */
} saved_run;

#define MODE_RUNS 64
static _Thread_local saved_run runs[MODE_RUNS];
static _Thread_local int nruns;
static _Thread_local long overflow; /* begins refused for want of room; their ends are ignored */

static unsigned current(void) {
    return (ag__no_grad_depth ? SAVED_NO_GRAD : 0u) | (ag__inference_mode ? SAVED_INFERENCE : 0u);
}

/* Saves the current state; false (an error recorded, nothing changed) when full. */
static bool push(const char *fn) {
    unsigned s = current();
    if (nruns && runs[nruns - 1].state == s && runs[nruns - 1].count < UINT32_MAX) {
        runs[nruns - 1].count++;
        return true;
    }
    if (nruns == MODE_RUNS) {
        overflow++;
        ag__fail(AG_ERR_ARG, "%s: grad-mode regions nested too deeply (more than %d changes of mode); "
                             "the mode is left as it was", fn, MODE_RUNS);
        return false;
    }
    runs[nruns++] = (saved_run){s, 1};
    return true;
}

/* Restores the state saved by the matching begin; an end without a begin is ignored. */
static void pop(void) {
    if (overflow) {
        overflow--;
        return;
    }
    if (!nruns) return;
    unsigned s = runs[nruns - 1].state;
    if (--runs[nruns - 1].count == 0) nruns--;
    ag__no_grad_depth = s & SAVED_NO_GRAD ? 1 : 0;
    ag__set_inference_mode(s & SAVED_INFERENCE);
}

void ag_no_grad_begin(void) {
    if (push("no_grad_begin")) ag__no_grad_depth = 1;
}
void ag_no_grad_end(void) { pop(); }

void ag_enable_grad_begin(void) {
    if (push("enable_grad_begin")) ag__no_grad_depth = ag__inference_mode; /* inference mode keeps grad off */
}
void ag_enable_grad_end(void) { pop(); }

void ag_inference_mode_begin(void) {
    if (!push("inference_mode_begin")) return;
    ag__no_grad_depth = 1;
    ag__set_inference_mode(true);
}
void ag_inference_mode_end(void) { pop(); }

bool ag_set_grad_enabled(bool enabled) {
    bool was = ag__no_grad_depth == 0;
    ag__no_grad_depth = enabled && !ag__inference_mode ? 0 : 1;
    return was;
}

bool ag_is_grad_enabled(void) { return ag__no_grad_depth == 0; }
bool ag_is_inference_mode_enabled(void) { return ag__inference_mode; }

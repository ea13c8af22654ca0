/*
 * step_hooks.c - the optimizer step inside backward (PyTorch's "optimizer in
 * backward", torch.Tensor.register_post_accumulate_grad_hook running a per-parameter
 * optimizer): a post-accumulate-grad hook on every parameter updates it with
 * ag_optimizer_step_param as soon as backward has its whole gradient, while that
 * gradient is still in cache, and may drop the gradient right away.  The records the
 * hooks point at live in the optimizer; optimizer.c removes the hooks
 * (ag_optimizer_remove_step_hooks, also when the optimizer is freed).
 */
#include "optim/internal.h"
#include "agrad/autograd.h"

/* p's gradient is final: update p, then drop its gradient if asked. */
static ag_status step_hook(ag_tensor *p, void *user) {
    const ag__step_hook *h = user;
    ag_status st = ag_optimizer_step_param(h->opt, h->i);
    if (st == AG_OK && h->opt->free_grad) ag_zero_grad(p);
    return st;
}

ag_status ag_optimizer_register_step_hooks(ag_optimizer *opt, bool free_grad) {
    if (!opt) return ag__fail(AG_ERR_ARG, "optimizer_register_step_hooks: optimizer is NULL");
    if (opt->algo->step)
        return ag__fail(AG_ERR_ARG, "optimizer_register_step_hooks: %s steps all its parameters together; it can't "
                                    "update one inside backward", opt->algo->name);
    if (opt->hooks)
        return ag__fail(AG_ERR_ARG, "optimizer_register_step_hooks: this %s already steps inside backward",
                        opt->algo->name);
    ag__step_hook *h = ag__calloc(sizeof *h * (size_t)opt->nparams);
    if (!h) return AG_ERR_NOMEM;
    for (int i = 0; i < opt->nparams; i++) {
        h[i] = (ag__step_hook){opt, i, {0, 0}};
        ag_status st = ag_register_post_accumulate_grad_hook(opt->ps[i].param, step_hook, &h[i], &h[i].handle);
        if (st) {
            while (i--) ag_hook_remove(h[i].handle);
            ag__free(h);
            return st;
        }
    }
    opt->hooks = h;
    opt->free_grad = free_grad;
    return AG_OK;
}

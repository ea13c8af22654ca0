/*
 * loss_object.c - a loss function bound to its options, the C form of
 * PyTorch's loss modules (nn.CrossEntropyLoss(weight=w), nn.MSELoss(), ...).
 */
#include "core/internal.h"
#include "agrad/loss.h"

struct ag_loss {
    ag_loss_fn fn;
    ag_loss_opts opts; /* holds references to its weight tensors */
};

ag_loss *ag_nn_loss(ag_loss_fn fn, const ag_loss_opts *o) {
    if (!fn) return ag__fail_null(AG_ERR_ARG, "nn_loss: the loss function is NULL");
    ag_loss *l = ag__alloc(sizeof *l);
    if (!l) return NULL;
    l->fn = fn;
    l->opts = o ? *o : ag_loss_defaults();
    ag_retain(l->opts.weight);
    ag_retain(l->opts.pos_weight);
    return l;
}

ag_tensor *ag_loss_forward(const ag_loss *loss, ag_tensor *input, ag_tensor *target) {
    AG_CHECK_HANDLES(NULL, "loss_forward", input, target);
    if (!input || !target) return NULL;
    if (!loss) return ag__fail_null(AG_ERR_ARG, "loss_forward: loss is NULL");
    return loss->fn(input, target, &loss->opts);
}

void ag_loss_free(ag_loss *loss) {
    if (!loss) return;
    ag_release(loss->opts.weight);
    ag_release(loss->opts.pos_weight);
    ag__free(loss);
}

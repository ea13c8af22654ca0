/*
 * loss_object.c - a loss function bound to its options, the C form of
 * PyTorch's loss modules (nn.CrossEntropyLoss(weight=w), nn.MSELoss(),
 * nn.CTCLoss(blank=3), ...): any loss of an input and a target, and the two
 * losses of more tensors that bind more than options (the distance callback of
 * TripletMarginWithDistanceLoss; CTCLoss's four tensors).  An object prints as
 * PyTorch's repr of its class.
 */
#include <stdio.h>
#include "core/internal.h"
#include "agrad/loss.h"

struct ag_loss {
    const char *cls;         /* the class it prints as */
    int arity;               /* the tensors forward takes */
    ag_loss_fn fn;           /* a loss of input and target (arity 2) */
    ag_distance_fn distance; /* TripletMarginWithDistanceLoss: the callback (NULL: pairwise L2), its ctx */
    void *ctx;
    ag_loss_opts opts;       /* holds references to its weight tensors */
};

/* The class of each two-tensor loss: PyTorch's loss module, or for Keras's losses Keras's class. */
static const struct {
    ag_loss_fn fn;
    const char *cls;
} CLASSES[] = {
    {ag_mse_loss, "MSELoss"},
    {ag_l1_loss, "L1Loss"},
    {ag_smooth_l1_loss, "SmoothL1Loss"},
    {ag_huber_loss, "HuberLoss"},
    {ag_binary_cross_entropy, "BCELoss"},
    {ag_binary_cross_entropy_with_logits, "BCEWithLogitsLoss"},
    {ag_nll_loss, "NLLLoss"},
    {ag_cross_entropy, "CrossEntropyLoss"},
    {ag_kl_div, "KLDivLoss"},
    {ag_poisson_nll_loss, "PoissonNLLLoss"},
    {ag_hinge_embedding_loss, "HingeEmbeddingLoss"},
    {ag_soft_margin_loss, "SoftMarginLoss"},
    {ag_multilabel_soft_margin_loss, "MultiLabelSoftMarginLoss"},
    {ag_multi_margin_loss, "MultiMarginLoss"},
    {ag_multilabel_margin_loss, "MultiLabelMarginLoss"},
    {ag_log_cosh_loss, "LogCosh"},
    {ag_mean_absolute_percentage_error, "MeanAbsolutePercentageError"},
    {ag_mean_squared_logarithmic_error, "MeanSquaredLogarithmicError"},
    {ag_hinge_loss, "Hinge"},
    {ag_squared_hinge_loss, "SquaredHinge"},
    {ag_categorical_hinge_loss, "CategoricalHinge"},
    {ag_cosine_similarity_loss, "CosineSimilarity"},
};

static ag_loss *loss_new(const char *cls, int arity, ag_loss_fn fn, const ag_loss_opts *o) {
    ag_loss *l = ag__alloc(sizeof *l);
    if (!l) return NULL;
    *l = (ag_loss){cls, arity, fn, NULL, NULL, o ? *o : ag_loss_defaults()};
    ag_retain(l->opts.weight);
    ag_retain(l->opts.pos_weight);
    return l;
}

ag_loss *ag_nn_loss(ag_loss_fn fn, const ag_loss_opts *o) {
    if (!fn) return ag__fail_null(AG_ERR_ARG, "nn_loss: the loss function is NULL");
    const char *cls = "Loss"; /* a function of the caller's */
    for (size_t i = 0; i < sizeof CLASSES / sizeof CLASSES[0]; i++)
        if (CLASSES[i].fn == fn) cls = CLASSES[i].cls;
    return loss_new(cls, 2, fn, o);
}

ag_loss *ag_nn_triplet_margin_with_distance_loss(ag_distance_fn distance, void *ctx, const ag_loss_opts *o) {
    ag_loss *l = loss_new("TripletMarginWithDistanceLoss", 3, NULL, o);
    if (l) l->distance = distance, l->ctx = ctx;
    return l;
}

ag_loss *ag_nn_ctc_loss(const ag_loss_opts *o) { return loss_new("CTCLoss", 4, NULL, o); }

ag_tensor *ag_loss_forward_n(const ag_loss *loss, ag_tensor *const *inputs, int n) {
    if (!loss) return ag__fail_null(AG_ERR_ARG, "loss_forward: loss is NULL");
    if (n != loss->arity || !inputs)
        return ag__fail_null(AG_ERR_ARG, "loss_forward: %s takes %d tensors, got %d", loss->cls, loss->arity,
                             inputs ? n : 0);
    AG_CHECK_HANDLE_ARRAY(NULL, "loss_forward", inputs, n);
    for (int i = 0; i < n; i++)
        if (!inputs[i]) return NULL;
    switch (loss->arity) {
    case 2: return loss->fn(inputs[0], inputs[1], &loss->opts);
    case 3:
        return ag_triplet_margin_with_distance_loss(inputs[0], inputs[1], inputs[2], loss->distance, loss->ctx,
                                                    &loss->opts);
    default: return ag_ctc_loss(inputs[0], inputs[1], inputs[2], inputs[3], &loss->opts);
    }
}

ag_tensor *ag_loss_forward(const ag_loss *loss, ag_tensor *input, ag_tensor *target) {
    AG_CHECK_HANDLES(NULL, "loss_forward", input, target);
    if (loss && loss->arity != 2)
        return ag__fail_null(AG_ERR_ARG, "loss_forward: %s takes %d tensors: call ag_loss_forward_n", loss->cls,
                             loss->arity);
    return ag_loss_forward_n(loss, (ag_tensor *[]){input, target}, 2);
}

ag_status ag_loss_print(const ag_loss *loss, FILE *f) {
    if (!loss || !f) return ag__fail(AG_ERR_ARG, "loss_print: %s is NULL", loss ? "f" : "loss");
    /* PyTorch's losses show no options; TripletMarginWithDistanceLoss shows its distance when it is a
     * module (the default, PairwiseDistance), not when it is a function */
    const bool pairwise = loss->arity == 3 && !loss->distance;
    if (fprintf(f, "%s(%s)\n", loss->cls, pairwise ? "\n  (distance_function): PairwiseDistance()\n" : "") < 0)
        return ag__fail(AG_ERR_IO, "loss_print: writing failed");
    return AG_OK;
}

void ag_loss_free(ag_loss *loss) {
    if (!loss) return;
    ag_release(loss->opts.weight);
    ag_release(loss->opts.pos_weight);
    ag__free(loss);
}

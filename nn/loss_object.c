/*
 * loss_object.c - a loss function bound to its options, the C form of
 * PyTorch's loss modules (nn.CrossEntropyLoss(weight=w), nn.MSELoss(),
 * nn.CTCLoss(blank=3), ...): any loss of an input and a target, the losses of
 * three tensors (nn.GaussianNLLLoss, nn.MarginRankingLoss, ..., and the harmonic
 * loss with its exponent), and those that bind more than options (the distance
 * callback of TripletMarginWithDistanceLoss; CTCLoss's four tensors).  An object
 * prints as PyTorch's repr of its class.
 */
#include <stdio.h>
#include "core/internal.h"
#include "agrad/loss.h"

/* A loss of three tensors whose options are all in ag_loss_opts. */
typedef ag_tensor *(*loss3_fn)(ag_tensor *a, ag_tensor *b, ag_tensor *c, const ag_loss_opts *o);

struct ag_loss {
    const char *cls;         /* the class it prints as */
    int arity;               /* the tensors forward takes */
    /* the loss of in[0..arity-1] with what the object binds */
    ag_tensor *(*forward)(const ag_loss *l, ag_tensor *const *in);
    ag_loss_fn fn;           /* ag_nn_loss: the loss of input and target */
    loss3_fn fn3;            /* a loss of three tensors and options */
    ag_distance_fn distance; /* TripletMarginWithDistanceLoss: the callback (NULL: pairwise L2), its ctx */
    void *ctx;
    double n;                /* HarmonicLoss: the exponent */
    ag_loss_opts opts;       /* holds references to its weight tensors */
};

static ag_tensor *forward_pair(const ag_loss *l, ag_tensor *const *in) { return l->fn(in[0], in[1], &l->opts); }
static ag_tensor *forward_triple(const ag_loss *l, ag_tensor *const *in) {
    return l->fn3(in[0], in[1], in[2], &l->opts);
}
static ag_tensor *forward_harmonic(const ag_loss *l, ag_tensor *const *in) {
    return ag_harmonic_loss(in[0], in[1], in[2], l->n, &l->opts);
}
static ag_tensor *forward_triplet_distance(const ag_loss *l, ag_tensor *const *in) {
    return ag_triplet_margin_with_distance_loss(in[0], in[1], in[2], l->distance, l->ctx, &l->opts);
}
static ag_tensor *forward_ctc(const ag_loss *l, ag_tensor *const *in) {
    return ag_ctc_loss(in[0], in[1], in[2], in[3], &l->opts);
}

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

static ag_loss *loss_new(const char *cls, int arity, ag_tensor *(*forward)(const ag_loss *, ag_tensor *const *),
                        const ag_loss_opts *o) {
    ag_loss *l = ag__alloc(sizeof *l);
    if (!l) return NULL;
    *l = (ag_loss){.cls = cls, .arity = arity, .forward = forward, .opts = o ? *o : ag_loss_defaults()};
    ag_retain(l->opts.weight);
    ag_retain(l->opts.pos_weight);
    return l;
}

static ag_loss *loss3_new(const char *cls, loss3_fn fn3, const ag_loss_opts *o) {
    ag_loss *l = loss_new(cls, 3, forward_triple, o);
    if (l) l->fn3 = fn3;
    return l;
}

ag_loss *ag_nn_loss(ag_loss_fn fn, const ag_loss_opts *o) {
    if (!fn) return ag__fail_null(AG_ERR_ARG, "nn_loss: the loss function is NULL");
    const char *cls = "Loss"; /* a function of the caller's */
    for (size_t i = 0; i < sizeof CLASSES / sizeof CLASSES[0]; i++)
        if (CLASSES[i].fn == fn) cls = CLASSES[i].cls;
    ag_loss *l = loss_new(cls, 2, forward_pair, o);
    if (l) l->fn = fn;
    return l;
}

ag_loss *ag_nn_gaussian_nll_loss(const ag_loss_opts *o) {
    return loss3_new("GaussianNLLLoss", ag_gaussian_nll_loss, o);
}

ag_loss *ag_nn_margin_ranking_loss(const ag_loss_opts *o) {
    return loss3_new("MarginRankingLoss", ag_margin_ranking_loss, o);
}

ag_loss *ag_nn_cosine_embedding_loss(const ag_loss_opts *o) {
    return loss3_new("CosineEmbeddingLoss", ag_cosine_embedding_loss, o);
}

ag_loss *ag_nn_triplet_margin_loss(const ag_loss_opts *o) {
    return loss3_new("TripletMarginLoss", ag_triplet_margin_loss, o);
}

ag_loss *ag_nn_harmonic_loss(double n, const ag_loss_opts *o) {
    ag_loss *l = loss_new("HarmonicLoss", 3, forward_harmonic, o);
    if (l) l->n = n;
    return l;
}

ag_loss *ag_nn_triplet_margin_with_distance_loss(ag_distance_fn distance, void *ctx, const ag_loss_opts *o) {
    ag_loss *l = loss_new("TripletMarginWithDistanceLoss", 3, forward_triplet_distance, o);
    if (l) l->distance = distance, l->ctx = ctx;
    return l;
}

ag_loss *ag_nn_ctc_loss(const ag_loss_opts *o) { return loss_new("CTCLoss", 4, forward_ctc, o); }

ag_tensor *ag_loss_forward_n(const ag_loss *loss, ag_tensor *const *inputs, int n) {
    if (!loss) return ag__fail_null(AG_ERR_ARG, "loss_forward: loss is NULL");
    if (n != loss->arity || !inputs)
        return ag__fail_null(AG_ERR_ARG, "loss_forward: %s takes %d tensors, got %d", loss->cls, loss->arity,
                             inputs ? n : 0);
    AG_CHECK_HANDLE_ARRAY(NULL, "loss_forward", inputs, n);
    for (int i = 0; i < n; i++)
        if (!inputs[i]) return NULL;
    return loss->forward(loss, inputs);
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
    const bool pairwise = loss->forward == forward_triplet_distance && !loss->distance;
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

/*
 * agrad/loss.h - the loss functions of torch.nn.functional.
 *
 * Names, defaults and semantics follow PyTorch (1.13): ag_mse_loss is
 * F.mse_loss, and so on.  Every loss is composed from agrad's differentiable
 * primitives (so autograd differentiates it and every input that requires
 * grad gets its gradient), except binary_cross_entropy whose clamped log
 * needs PyTorch's guarded adjoint; docs/nn-losses.md gives each formula.
 *
 * Options.  All losses take one options struct; NULL means PyTorch's defaults.
 * Start from AG_LOSS_DEFAULTS (or ag_loss_defaults()) and change what you
 * need -- a zero-initialised struct is NOT the defaults.  margin, eps and p
 * hold NAN by default, which stands for "this loss's PyTorch default" (e.g.
 * margin 1 for hinge_embedding_loss but 0 for margin_ranking_loss).
 *
 * Errors and ownership follow agrad/core.h: NULL with a message naming the
 * loss and the shapes; NULL inputs give NULL without a new message.  The
 * result belongs to the innermost scope (or the caller); the intermediate
 * tensors of the composition are released when the loss returns (the graph
 * keeps what backward needs).  Inputs and float targets must share one
 * floating dtype; class-index targets are int64.
 */
#ifndef AGRAD_LOSS_H
#define AGRAD_LOSS_H

#include <math.h>
#include <stdio.h>
#include "core.h"
#include "ops.h" /* ag_reduction */

#ifdef __cplusplus
extern "C" {
#endif


typedef struct ag_loss_opts {
    ag_reduction reduction;  /* AG_REDUCTION_MEAN */
    /* Rescaling weight, NULL for none: per class [C] for nll_loss, cross_entropy,
     * multi_margin_loss, harmonic_loss; broadcast to the input for
     * binary_cross_entropy(_with_logits) and multilabel_soft_margin_loss. */
    ag_tensor *weight;
    /* Weight of positive examples for binary_cross_entropy_with_logits,
     * broadcast to the target (one per class: [C]).  NULL for none. */
    ag_tensor *pos_weight;
    int64_t ignore_index;    /* -100: targets of this class are skipped (nll, cross_entropy) */
    double label_smoothing;  /* 0, in [0, 1] (cross_entropy, harmonic_loss) */
    double beta;             /* 1 (smooth_l1_loss; 0 makes it l1_loss) */
    double delta;            /* 1 (huber_loss; > 0) */
    double margin;           /* NAN: 1 hinge_embedding, multi_margin, triplet_margin; 0 margin_ranking, cosine_embedding */
    double eps;              /* NAN: 1e-8 poisson_nll; 1e-6 gaussian_nll, triplet_margin */
    double p;                /* NAN: 1 multi_margin (1 or 2); 2 triplet_margin (norm degree > 0) */
    bool log_target;         /* false (kl_div: target given as log-probabilities) */
    bool log_input;          /* true (poisson_nll_loss: input is the log of the rate) */
    bool full;               /* false (poisson_nll / gaussian_nll: add the constant terms) */
    bool swap;               /* false (triplet_margin_loss: distance swap) */
    int64_t blank;           /* 0 (ctc_loss: the blank class) */
    bool zero_infinity;      /* false (ctc_loss: infinite losses, of targets no alignment fits, and their gradients become 0) */
} ag_loss_opts;

/* PyTorch's defaults, as an initialiser: ag_loss_opts o = AG_LOSS_DEFAULTS; */
#define AG_LOSS_DEFAULTS                                                                               \
    {.reduction = AG_REDUCTION_MEAN, .weight = NULL, .pos_weight = NULL, .ignore_index = -100,        \
     .label_smoothing = 0.0, .beta = 1.0, .delta = 1.0, .margin = NAN, .eps = NAN, .p = NAN,          \
     .log_target = false, .log_input = true, .full = false, .swap = false, .blank = 0, .zero_infinity = false}

/* The same defaults as a value. */
AG_API ag_loss_opts ag_loss_defaults(void);

/* ---- regression: input and target broadcast together, any shape ------------------------- */
/* (x - y)^2 */
AG_API ag_tensor *ag_mse_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* |x - y| */
AG_API ag_tensor *ag_l1_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = x - y).  beta >= 0 (AG_ERR_ARG). */
AG_API ag_tensor *ag_smooth_l1_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta).  delta > 0 (AG_ERR_ARG). */
AG_API ag_tensor *ag_huber_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);

/* ---- probabilistic ------------------------------------------------------------------------------- */
/* -w (y log x + (1 - y) log(1 - x)), each log clamped at -100 as PyTorch, with PyTorch's
 * input gradient w (x - y) / max(x (1 - x), 1e-12), finite at x = 0 and 1.  target has
 * input's shape (AG_ERR_SHAPE); input and target values must lie in [0, 1] (AG_ERR_VALUE
 * naming the first bad value; PyTorch checks only the input).  weight broadcasts to the
 * input.  The target's gradient is the derivative of the clamped logs. */
AG_API ag_tensor *ag_binary_cross_entropy(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* -w (pw y log σ(x) + (1 - y) log(1 - σ(x))) computed stably for any logit x; target
 * has input's shape; pos_weight pw broadcasts to the target, weight w to the input. */
AG_API ag_tensor *ag_binary_cross_entropy_with_logits(ag_tensor *input, ag_tensor *target,
                                                      const ag_loss_opts *o);
/* Negative log likelihood of log-probabilities input [C], [N, C] or [N, C, d1, ...] at
 * int64 class indices target [], [N] or [N, d1, ...]: -w[y] x[n, y].  Targets equal to
 * ignore_index are skipped; mean divides by the sum of the weights of the others (NaN
 * if there are none, as PyTorch).  Fails with AG_ERR_SHAPE for a target shape that does
 * not fit, AG_ERR_INDEX naming a target outside [0, C), AG_ERR_SHAPE for a weight that is
 * not [C], AG_ERR_DTYPE for a target that is not int64. */
AG_API ag_tensor *ag_nll_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* nll_loss(log_softmax(input, 1), target) for int64 class-index targets (shapes as
 * nll_loss), or -Σ_c w_c y_c log_softmax(input)_c for a float target of input's shape
 * holding class probabilities.  label_smoothing ε mixes the target with the uniform
 * distribution: (1 - ε) y + ε / C.  Finite for any finite logits and for -inf logits of
 * non-target classes. */
AG_API ag_tensor *ag_cross_entropy(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* Kullback-Leibler divergence with input given as log-probabilities:
 * y (log y - x) (0 where y = 0), or e^y (y - x) when log_target.  Broadcasting;
 * reduction AG_REDUCTION_BATCHMEAN divides the sum by the size of dim 0. */
AG_API ag_tensor *ag_kl_div(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* Poisson negative log likelihood: e^x - y x when log_input, else x - y log(x + eps);
 * full adds Stirling's y log y - y + 0.5 log(2π y) where y > 1. */
AG_API ag_tensor *ag_poisson_nll_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* Gaussian negative log likelihood 0.5 (log v + (x - y)^2 / v) (+ 0.5 log 2π when full)
 * with v = max(var, eps) (the clamp passes the gradient through, as PyTorch).  var has
 * input's shape, or input's shape without its last dim, or that with a last dim of 1
 * (AG_ERR_SHAPE otherwise); a negative var is AG_ERR_VALUE. */
AG_API ag_tensor *ag_gaussian_nll_loss(ag_tensor *input, ag_tensor *target, ag_tensor *var,
                                       const ag_loss_opts *o);

/* ---- margins and embeddings ----------------------------------------------------------------- */
/* x where y == 1, max(0, margin - x) where y == -1 (sum of both for other y), margin 1. */
AG_API ag_tensor *ag_hinge_embedding_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* max(0, -y (x1 - x2) + margin), margin 0; the three have one number of dims and broadcast. */
AG_API ag_tensor *ag_margin_ranking_loss(ag_tensor *input1, ag_tensor *input2, ag_tensor *target,
                                         const ag_loss_opts *o);
/* log(1 + e^(-y x)), computed without overflow; broadcasting. */
AG_API ag_tensor *ag_soft_margin_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* Per sample, the mean over the C classes (last dim) of
 * -w (y log σ(x) + (1 - y) log σ(-x)); mean/sum reduce over samples. */
AG_API ag_tensor *ag_multilabel_soft_margin_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* Per sample of input [N, C] (or [C]) with int64 target [N] (or [] / [1]):
 * Σ_{j≠y} w[y] max(0, margin - x[y] + x[j])^p / C; p 1 or 2 (AG_ERR_ARG), margin 1. */
AG_API ag_tensor *ag_multi_margin_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* 1 - cos(x1, x2) where y == 1, max(0, cos(x1, x2) - margin) where y == -1, margin 0;
 * x1, x2 [N, D] (target [N]) or [D] (target []); cos = x1·x2 / sqrt((|x1|² + 1e-12)(|x2|² + 1e-12)). */
AG_API ag_tensor *ag_cosine_embedding_loss(ag_tensor *input1, ag_tensor *input2, ag_tensor *target,
                                           const ag_loss_opts *o);
/* max(0, margin + d(a, p) - d(a, n)) with d(u, v) = ||u - v + eps||_p over the last dim
 * (p > 0, INFINITY for the max norm); swap replaces d(a, n) by min(d(a, n), d(p, n)).
 * margin 1, p 2, eps 1e-6; the three have one number of dims (at least 1) and broadcast. */
AG_API ag_tensor *ag_triplet_margin_loss(ag_tensor *anchor, ag_tensor *positive, ag_tensor *negative,
                                         const ag_loss_opts *o);

/* F.multilabel_margin_loss: input [C] or [N, C], target int64 of the same shape holding each
 * sample's classes, ended by the first -1 (the rest ignored); per sample
 * Σ_{j target} Σ_{i not a target} max(0, 1 - (x[y_j] - x[i])) / C.  AG_ERR_DTYPE for a target
 * not int64, AG_ERR_SHAPE for other shapes, AG_ERR_INDEX for a class outside [-1, C). */
AG_API ag_tensor *ag_multilabel_margin_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);

/* A distance between x1 and x2 over their last dim, one value per sample ([N] for [N, D]
 * inputs, 0-d for [D]): differentiable, of the inputs' dtype, owned as any op's result; NULL
 * with an error recorded on failure.  ctx is the caller's. */
typedef ag_tensor *(*ag_distance_fn)(ag_tensor *x1, ag_tensor *x2, void *ctx);
/* F.triplet_margin_with_distance_loss: l = max(0, margin + d(anchor, positive) - d(anchor, negative)),
 * d(anchor, negative) replaced by min(d(anchor, negative), d(positive, negative)) with o->swap;
 * distance NULL: the pairwise L2 distance (ag_pairwise_distance, eps 1e-6).  o->margin (1) must be
 * > 0 (AG_ERR_ARG); shapes as ag_triplet_margin_loss; a distance that fails fails the loss with
 * its error (AG_ERR_VALUE if it returns NULL without one, AG_ERR_DTYPE for another dtype). */
AG_API ag_tensor *ag_triplet_margin_with_distance_loss(ag_tensor *anchor, ag_tensor *positive, ag_tensor *negative,
                                                       ag_distance_fn distance, void *ctx, const ag_loss_opts *o);

/* ---- sequences ---------------------------------------------------------------------------------- */
/* F.ctc_loss (connectionist temporal classification; docs/nn-losses.md): per sample, -log of the
 * probability of its target summed over every alignment to its input (labels repeated, blanks
 * between, repeats of a label separated by a blank).  log_probs: float log-probabilities [T, N, C]
 * (log_softmax over C), or [T, C] unbatched; targets: int64, padded [N, S] or the samples'
 * targets concatenated (1-d), [S] unbatched; input_lengths, target_lengths: int64 [N] (0-d or [1]
 * unbatched), each input length in [0, T], each target length in [0, S] (concatenated: summing
 * to the targets' size).  Labels within the lengths lie in [0, C) and are not o->blank (0).
 * o->reduction: none gives [N] (0-d unbatched), sum their sum, mean the mean of each loss divided
 * by its target length (at least 1), as PyTorch.  A target no alignment fits (too long for its
 * input) gives +inf and a NaN gradient, or 0 and a zero gradient with o->zero_infinity; an empty
 * input with an empty target gives 0 (PyTorch reads uninitialised memory there).  The gradient
 * is PyTorch's, exp(lp) minus the occupancies: exactly the gradient of the logits after
 * log_softmax, and, for log-probabilities that are not normalised, not the derivative of the
 * loss.  Returns the loss (scope-owned); NULL with AG_ERR_DTYPE, AG_ERR_SHAPE, AG_ERR_VALUE (a
 * length out of range) or AG_ERR_INDEX (a label out of range or the blank; blank outside
 * [0, C)), naming ctc_loss and the sizes. */
AG_API ag_tensor *ag_ctc_loss(ag_tensor *log_probs, ag_tensor *targets, ag_tensor *input_lengths,
                              ag_tensor *target_lengths, const ag_loss_opts *o);

/* ---- harmonic loss (Baek et al., 2025) ------------------------------------------------------- */
/* Harmonic loss of x [N, D] against class centres [C, D] at int64 targets [N]: with
 * d_i = ||x - w_i||_2 and exponent n > 0, p_i = d_i^-n / Σ_j d_j^-n and the loss is
 * -log p_target, computed in log space as cross_entropy of the logits -n log d_i (so
 * weight, ignore_index, label_smoothing and reduction apply as there).  A sample that
 * coincides with a centre has d = 0 and a non-finite loss. */
AG_API ag_tensor *ag_harmonic_loss(ag_tensor *x, ag_tensor *centres, ag_tensor *target, double n,
                                   const ag_loss_opts *o);

/* ---- Keras's losses (https://keras.io/api/losses/; nn/loss_keras.c) -------------------------- */
/* input is y_pred, target y_true (broadcasting together, float, one dtype).  As in Keras each
 * gives one value per sample, over the last dim, and o->reduction acts on those: none gives
 * input's shape without the last dim, mean (Keras's default) their mean, sum their sum; other
 * options are ignored.  Errors as the losses above. */
/* keras.losses.LogCosh: mean of log cosh(y_pred - y_true). */
AG_API ag_tensor *ag_log_cosh_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* keras.losses.MeanAbsolutePercentageError: mean of 100 |y_true - y_pred| / max(|y_true|, 1e-7). */
AG_API ag_tensor *ag_mean_absolute_percentage_error(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* keras.losses.MeanSquaredLogarithmicError: mean of (log1p(max(y_pred, 1e-7)) - log1p(max(y_true, 1e-7)))². */
AG_API ag_tensor *ag_mean_squared_logarithmic_error(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* keras.losses.Hinge / SquaredHinge: mean of max(1 - y_true y_pred, 0) (squared); targets -1/1,
 * or 0/1 (turned into -1/1 when every target is 0 or 1, as Keras). */
AG_API ag_tensor *ag_hinge_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
AG_API ag_tensor *ag_squared_hinge_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* keras.losses.CategoricalHinge: max(max((1 - y_true) y_pred) - Σ y_true y_pred + 1, 0) over the last
 * dim, y_true one-hot. */
AG_API ag_tensor *ag_categorical_hinge_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
/* keras.losses.CosineSimilarity (axis -1): -Σ ŷ_true ŷ_pred of the L2-normalised vectors (norms at
 * least 1e-6): -1 when aligned, 0 when orthogonal, 1 when opposite. */
AG_API ag_tensor *ag_cosine_similarity_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);

/* ---- information measures of distributions (the decks' entropy primer) ----------------------- */
/* Of discrete distributions laid along dim (negative counts from the end), in nats (divide by
 * log 2 for bits): p and q are probabilities, or log-probabilities when log_input; float32 or
 * float64 of one dtype, broadcasting together.  A term where p is 0 (log p = -inf) counts 0 and
 * has gradient 0.  Each returns the broadcast shape without dim (a 0-d p or q: the value
 * itself), differentiable in p and q, owned as usual; NULL with AG_ERR_DTYPE, AG_ERR_SHAPE or
 * AG_ERR_INDEX (dim out of range) recorded.  The distributions are not checked to sum to 1. */
/* H(p) = -Σ p log p. */
AG_API ag_tensor *ag_entropy(ag_tensor *p, int dim, bool log_input);
/* H(p, q) = -Σ p log q: the bits (nats) to code samples of p with a code built for q. */
AG_API ag_tensor *ag_cross_entropy_pq(ag_tensor *p, ag_tensor *q, int dim, bool log_input);
/* KL(p, q) = Σ p log(p / q) = H(p, q) - H(p) >= 0; +inf where q is 0 and p is not. */
AG_API ag_tensor *ag_kl_divergence(ag_tensor *p, ag_tensor *q, int dim, bool log_input);
/* PPL(p, q) = e^H(p, q) (= 2^H in bits), or e^H(p) when q is NULL: K for the uniform
 * distribution over K states, 1 for a certain one. */
AG_API ag_tensor *ag_perplexity(ag_tensor *p, ag_tensor *q, int dim, bool log_input);

/* ---- loss objects (torch.nn.CrossEntropyLoss(...), nn.MSELoss(), ...) ------------------------ */
/* Any loss of an input and a target above. */
typedef ag_tensor *(*ag_loss_fn)(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o);
typedef struct ag_loss ag_loss;
/* A loss bound to its options, as PyTorch's loss modules: e.g.
 * ag_nn_loss(ag_cross_entropy, &o) for nn.CrossEntropyLoss(label_smoothing=0.1).
 * The options are copied and their weight tensors retained (o NULL: defaults).
 * Free with ag_loss_free.  NULL with AG_ERR_ARG if fn is NULL, AG_ERR_NOMEM. */
AG_API ag_loss *ag_nn_loss(ag_loss_fn fn, const ag_loss_opts *o);
/* nn.TripletMarginWithDistanceLoss(distance_function, margin, swap, reduction): forward takes
 * (anchor, positive, negative) and calls ag_triplet_margin_with_distance_loss with distance (NULL:
 * the pairwise L2 distance) and ctx, which the object keeps (ctx must outlive it).  NULL with
 * AG_ERR_NOMEM. */
AG_API ag_loss *ag_nn_triplet_margin_with_distance_loss(ag_distance_fn distance, void *ctx, const ag_loss_opts *o);
/* nn.CTCLoss(blank, reduction, zero_infinity): forward takes (log_probs, targets, input_lengths,
 * target_lengths) and calls ag_ctc_loss.  NULL with AG_ERR_NOMEM. */
AG_API ag_loss *ag_nn_ctc_loss(const ag_loss_opts *o);
/* The losses of three tensors as objects; each forward takes the three tensors of its function,
 * in its order, and calls it with the object's options (o NULL: defaults; copied, weight tensors
 * retained), so the options are checked, with the function's messages, when it runs.  Free with
 * ag_loss_free; NULL with AG_ERR_NOMEM. */
/* nn.GaussianNLLLoss(full, eps, reduction): forward (input, target, var). */
AG_API ag_loss *ag_nn_gaussian_nll_loss(const ag_loss_opts *o);
/* nn.MarginRankingLoss(margin, reduction): forward (input1, input2, target). */
AG_API ag_loss *ag_nn_margin_ranking_loss(const ag_loss_opts *o);
/* nn.CosineEmbeddingLoss(margin, reduction): forward (input1, input2, target). */
AG_API ag_loss *ag_nn_cosine_embedding_loss(const ag_loss_opts *o);
/* nn.TripletMarginLoss(margin, p, eps, swap, reduction): forward (anchor, positive, negative). */
AG_API ag_loss *ag_nn_triplet_margin_loss(const ag_loss_opts *o);
/* The harmonic loss with exponent n (and o's weight, ignore_index, label_smoothing, reduction):
 * forward (x, centres, target) calls ag_harmonic_loss(x, centres, target, n, o); prints as
 * "HarmonicLoss()". */
AG_API ag_loss *ag_nn_harmonic_loss(double n, const ag_loss_opts *o);
/* The loss of inputs[0..n-1] with the object's options: n must be the number of tensors its
 * loss takes (2 for ag_nn_loss's, 3 for the three-tensor losses above and
 * TripletMarginWithDistanceLoss, 4 for CTCLoss; AG_ERR_ARG naming the class otherwise, and for
 * a NULL loss or array).  The result follows the usual ownership
 * rules; a NULL input gives NULL. */
AG_API ag_tensor *ag_loss_forward_n(const ag_loss *loss, ag_tensor *const *inputs, int n);
/* fn(input, target, options) of an ag_nn_loss object (AG_ERR_ARG for the others: use
 * ag_loss_forward_n); the result follows the usual ownership rules. */
AG_API ag_tensor *ag_loss_forward(const ag_loss *loss, ag_tensor *input, ag_tensor *target);
/* Prints the object as print(loss) in PyTorch: its class and "()" (PyTorch shows no options),
 * e.g. "CrossEntropyLoss()", "TripletMarginLoss()", and for TripletMarginWithDistanceLoss with the default distance
 * its PairwiseDistance child.  Keras's losses print as their Keras class ("LogCosh()"), a
 * function of the caller's as "Loss()".  AG_ERR_ARG for NULL, AG_ERR_IO if writing fails. */
AG_API ag_status ag_loss_print(const ag_loss *loss, FILE *f);
/* Frees the loss object and drops its weight tensors.  NULL is ignored. */
AG_API void ag_loss_free(ag_loss *loss);

#ifdef __cplusplus
}
#endif
#endif

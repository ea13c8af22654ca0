/*
 * agrad/nn.h - modules (torch.nn): objects that hold parameters, buffers,
 * child modules and configuration, with a common interface.
 *
 * A module owns its parameters and buffers (tensors created outside any
 * scope, freed with the module) and the children added to it.  Forward
 * results follow the usual rules: owned by the innermost scope.  Parameter
 * names follow PyTorch: a child's parameters are prefixed with the child's
 * name, e.g. "0.weight", "2.bias", so state dicts load in both libraries.
 *
 * Defining a module type: fill an ag_module_type (name, forward, optional
 * describe and destroy), create instances with ag_module_new, and register
 * parameters, buffers and children.  Built-in layers are made the same way.
 * ag_module_forward runs forward inside a scope of its own and hands only the
 * result on, so a forward may compose ops freely: its intermediates are released
 * when it returns (or live on in the result's graph), with or without a scope
 * open around the call.  A forward that returns x itself retains it first
 * (ag_retain), as a new result needs a reference of its own.  A module whose forward
 * takes or gives several tensors also sets ag_module_set_forward_n.
 *
 * Also here: initialisation (torch.nn.init) and flat parameter buffers
 * (torch.nn.utils: ag_flatten_parameters, ag_parameters_to_vector).
 */
#ifndef AGRAD_NN_H
#define AGRAD_NN_H

#include <stdio.h>
#include "core.h"
#include "state.h"
#include "ops.h" /* ag_conv_opts, ag_pool_opts */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ag_module ag_module;

typedef struct ag_module_type {
    const char *name; /* shown when printing, e.g. "Linear" */
    /* y = module(x); NULL on error (with a message).  Required. */
    ag_tensor *(*forward)(ag_module *m, ag_tensor *x);
    /* Writes the configuration shown inside the parentheses, e.g.
     * "in_features=3, out_features=2, bias=True".  Optional. */
    void (*describe)(const ag_module *m, char *buf, size_t size);
    /* Frees what ag_module_data points at.  Optional (NULL: ag__free it). */
    void (*destroy)(void *data);
} ag_module_type;

/* ---- defining modules --------------------------------------------------------------- */
/* A new module of type with its private data (owned by the module from now on,
 * even on failure); training mode on.  NULL on ENOMEM. */
AG_API ag_module *ag_module_new(const ag_module_type *type, void *data);
/* The data passed to ag_module_new. */
AG_API void *ag_module_data(const ag_module *m);
/* Registers a parameter (retained; its requires_grad is set).  Names are unique
 * among the module's parameters, buffers and children.  Returns AG_OK or an error. */
AG_API ag_status ag_module_register_parameter(ag_module *m, const char *name, ag_tensor *t);
/* Registers a buffer: state saved with the module but not trained (e.g. running mean). */
AG_API ag_status ag_module_register_buffer(ag_module *m, const char *name, ag_tensor *t);
/* Adds child as a submodule named name; m owns it from now on (even on failure).  A
 * module has one parent: a child that already has one, m itself or an ancestor of m
 * (a cycle) is refused with AG_ERR_ARG and stays where it was (not freed). */
AG_API ag_status ag_module_add_child(ag_module *m, const char *name, ag_module *child);
/* The module's own parameter / buffer / child named name, or NULL. */
AG_API ag_tensor *ag_module_get_parameter(const ag_module *m, const char *name);
AG_API ag_tensor *ag_module_get_buffer(const ag_module *m, const char *name);
AG_API ag_module *ag_module_get_child(const ag_module *m, const char *name);
/* Replaces the tensor of an existing parameter or buffer (e.g. after a dtype change). */
AG_API ag_status ag_module_set_tensor(ag_module *m, const char *name, ag_tensor *t);

/* ---- using modules ---------------------------------------------------------------------- */
/* y = m(x).  NULL x passes through.  Several threads may run it on one module at
 * once while the module is in eval mode (a forward in training mode is a write:
 * BatchNorm updates its running statistics); see docs/design.md#threads. */
AG_API ag_tensor *ag_module_forward(ag_module *m, ag_tensor *x);
/* ---- forward over several tensors (docs/nn-layers.md#several-inputs-and-outputs) ---- */
/* The most inputs or outputs one ag_module_forward_n call passes. */
#define AG_MODULE_MAX_IO 8
/* A forward of several tensors in, several out (PyTorch's forward(*args) -> tuple), e.g.
 * MultiheadAttention's (query, key, value, key_padding_mask, attn_mask) -> (output, weights).
 * in[0..n_in) may hold NULL for an input left out; opts points at the module's options struct
 * (its header names it) or is NULL for its defaults.  Writes out[0..n_out) (NULL for an output
 * not produced), tensors made in the call's scope; returns AG_OK or an error with a message. */
typedef ag_status (*ag_module_forward_n_fn)(ag_module *m, int n_in, ag_tensor *const *in, const void *opts, int n_out,
                                            ag_tensor **out);
/* Gives m a forward over several tensors (the built-in attention and Transformer layers have
 * one).  NULL m is ignored; NULL fn removes it. */
AG_API void ag_module_set_forward_n(ag_module *m, ag_module_forward_n_fn fn);
/* out = m(*in): runs m's forward over several tensors inside a scope of its own, as
 * ag_module_forward, and writes its n_out results, owned by the innermost scope open around
 * the call (else by the caller); every out[i] is NULL on failure.  Module hooks run for
 * ag_module_forward only.  AG_ERR_ARG for NULL m, in or out, a module without such a forward,
 * n_in or n_out outside [1, AG_MODULE_MAX_IO]; otherwise the forward's own errors. */
AG_API ag_status ag_module_forward_n(ag_module *m, int n_in, ag_tensor *const *in, const void *opts, int n_out,
                                     ag_tensor **out);
/* ---- module hooks (docs/hooks.md) ---- */
/* Each is registered on one module (not its children), runs in registration order
 * from ag_module_forward and is freed with the module; ag_hook_remove(handle)
 * removes it.  user is passed through (borrowed).  A hook returns AG_OK, or an
 * error status (with a message): the forward (or backward) then fails with that
 * status, the message prefixed with the hook and the module.  Registration
 * returns AG_OK, AG_ERR_ARG for a NULL module or function, or AG_ERR_NOMEM; it
 * writes the handle unless handle is NULL.
 *
 * Forward pre-hook (register_forward_pre_hook): called before forward with its
 * input x; may set *replace to the input forward gets instead. */
typedef ag_status (*ag_forward_pre_hook)(ag_module *m, ag_tensor *x, ag_tensor **replace, void *user);
/* Forward hook (register_forward_hook): called after forward with its input and
 * output y; may set *replace to the output returned instead. */
typedef ag_status (*ag_forward_hook)(ag_module *m, ag_tensor *x, ag_tensor *y, ag_tensor **replace, void *user);
/* Full backward hook (register_full_backward_hook): called during backward with
 * grad_input = dL/dx and grad_output = dL/dy once dL/dx is complete (grad_input is
 * NULL, and the hook called when dL/dy is, for an input that does not require
 * grad); may set *replace to the dL/dx that flows on (x's shape and dtype).  It
 * runs in no-grad mode inside a scope of its own; the gradients are to be read.
 * The hooks a forward sees are the ones that run for its graph.  Forward records
 * an identity view on x and on y to catch the gradients (PyTorch's BackwardHook),
 * so the input forward gets and the output returned are views of x and y. */
typedef ag_status (*ag_backward_hook)(ag_module *m, ag_tensor *grad_input, ag_tensor *grad_output,
                                      ag_tensor **replace, void *user);
AG_API ag_status ag_module_register_forward_pre_hook(ag_module *m, ag_forward_pre_hook fn, void *user,
                                                     ag_hook_handle *handle);
AG_API ag_status ag_module_register_forward_hook(ag_module *m, ag_forward_hook fn, void *user, ag_hook_handle *handle);
AG_API ag_status ag_module_register_full_backward_hook(ag_module *m, ag_backward_hook fn, void *user,
                                                       ag_hook_handle *handle);

/* Frees m, its children, parameters and buffers.  NULL is ignored.  A child is freed
 * by its parent: freeing it directly records AG_ERR_ARG and does nothing. */
AG_API void ag_module_free(ag_module *m);
AG_API const char *ag_module_type_name(const ag_module *m);
/* Train / eval mode, recursively (Dropout, BatchNorm behave differently). */
AG_API void ag_module_train(ag_module *m, bool training);
AG_API void ag_module_eval(ag_module *m);
AG_API bool ag_module_is_training(const ag_module *m);
/* Drops the gradients of every parameter (set_to_none, as PyTorch 2). */
AG_API void ag_module_zero_grad(ag_module *m);
/* Number of parameter tensors, recursively, and the i-th in PyTorch's order
 * (own parameters first, then each child's).  The full dotted name is written
 * into name (if not NULL).  Borrowed; NULL if i is out of range. */
AG_API int ag_module_num_parameter_tensors(const ag_module *m);
AG_API ag_tensor *ag_module_parameter(const ag_module *m, int i, char *name, size_t name_size);
/* Writes every parameter into out (up to max); returns how many there are in all,
 * or -1 with AG_ERR_ARG recorded when m is NULL. */
AG_API int ag_module_parameters(const ag_module *m, ag_tensor **out, int max);
/* Total number of parameter elements (trainable only if trainable_only). */
AG_API int64_t ag_module_num_parameters(const ag_module *m, bool trainable_only);
/* Number of direct children, and the i-th child (borrowed) and its name. */
AG_API int ag_module_num_children(const ag_module *m);
AG_API ag_module *ag_module_child(const ag_module *m, int i, const char **name);
/* Converts every float32/float64 parameter and buffer, and their gradients, to dtype
 * (float32 or float64) in place, as torch.nn.Module.to(dtype): every handle stays
 * valid (an optimizer made earlier keeps training the model; its state follows at
 * its next step) and each converted tensor's version is bumped.  Fails, changing
 * nothing, with AG_ERR_ARG naming the tensor when one is a flattened parameter
 * (ag_flatten_parameters), has a live view or is not a leaf; AG_ERR_NOMEM likewise. */
AG_API ag_status ag_module_to_dtype(ag_module *m, ag_dtype dtype);

/* Prints the module tree as print(model) does in PyTorch. */
AG_API ag_status ag_module_print(const ag_module *m, FILE *f);
/* Runs one forward pass on zeros of input_shape (no grad, eval mode kept as is)
 * and prints a table of each layer's type, output shape and parameter count. */
AG_API ag_status ag_module_summary(ag_module *m, ag_shape input_shape, ag_dtype dtype, FILE *f);

/* ---- state ------------------------------------------------------------------------------- */
/* Adds every parameter and buffer under its dotted name to sd (sharing the tensors). */
AG_API ag_status ag_module_state_dict(const ag_module *m, ag_state_dict *sd);
/* Copies values from sd into the module's parameters and buffers.  Names, shapes
 * must match (dtypes are converted); strict also fails on missing or unexpected
 * entries.  Nothing is changed unless everything validates. */
AG_API ag_status ag_module_load_state_dict(ag_module *m, const ag_state_dict *sd, bool strict);
/* ag_module_state_dict + ag_save_safetensors (atomic), and the reverse (strict). */
AG_API ag_status ag_module_save(const ag_module *m, const char *path);
AG_API ag_status ag_module_load(ag_module *m, const char *path);

/* ---- containers and basic layers ---------------------------------------------------------------- */
/* nn.Sequential: children named "0", "1", ...; takes ownership of all n modules
 * (even on failure).  A NULL among them makes the result NULL, and so does a module
 * listed twice or one that is already a child elsewhere (which stays there). */
AG_API ag_module *ag_nn_sequential(int n, ag_module *const *modules);
#define AG_SEQUENTIAL(...) \
    ag_nn_sequential((int)(sizeof((ag_module *[]){__VA_ARGS__}) / sizeof(ag_module *)), (ag_module *[]){__VA_ARGS__})
/* Appends a module to a Sequential (takes ownership, even on failure, except of a
 * module refused as ag_module_add_child refuses it: seq itself, an ancestor of seq,
 * a child of another module). */
AG_API ag_status ag_nn_sequential_append(ag_module *seq, ag_module *m);
/* nn.ModuleList: holds the n modules as children "0", "1", ... (state-dict keys "0.weight", ...),
 * with Sequential's ownership rules; it has no forward (ag_module_forward fails with AG_ERR_ARG, as
 * PyTorch's raises): a user's module calls ag_module_child(list, i, NULL).  Prints as PyTorch's. */
AG_API ag_module *ag_nn_module_list(int n, ag_module *const *modules);
#define AG_MODULE_LIST(...) \
    ag_nn_module_list((int)(sizeof((ag_module *[]){__VA_ARGS__}) / sizeof(ag_module *)), (ag_module *[]){__VA_ARGS__})
/* Appends a module to a ModuleList as child "<length>" (ownership as ag_nn_sequential_append). */
AG_API ag_status ag_nn_module_list_append(ag_module *list, ag_module *m);
/* nn.ModuleDict: holds modules[i] as the child names[i] (state-dict keys "name.weight", ...), in
 * insertion order, with Sequential's ownership rules; a name that is empty, has a '.', or is taken
 * fails (AG_ERR_ARG, the module freed).  No forward, as ModuleList; a user's module calls
 * ag_module_get_child(dict, name).  Prints as PyTorch's. */
AG_API ag_module *ag_nn_module_dict(int n, const char *const *names, ag_module *const *modules);
/* Adds m to a ModuleDict under name (ownership as ag_nn_sequential_append). */
AG_API ag_status ag_nn_module_dict_add(ag_module *dict, const char *name, ag_module *m);
/* nn.Linear(in_features, out_features, bias): weight [out, in] and bias [out]
 * initialised U(-1/sqrt(in), 1/sqrt(in)) as PyTorch, from this thread's generator. */
AG_API ag_module *ag_nn_linear(int64_t in_features, int64_t out_features, bool bias);
/* nn.Flatten(start_dim=1, end_dim=-1) and nn.Unflatten(dim, sizes). */
AG_API ag_module *ag_nn_flatten(int start_dim, int end_dim);
AG_API ag_module *ag_nn_unflatten(int dim, ag_shape sizes);
/* nn.Identity. */
AG_API ag_module *ag_nn_identity(void);

/* ---- activation modules (see the functional ops for the formulas) ------------------------ */
AG_API ag_module *ag_nn_relu(void);    /* nn.ReLU() */
AG_API ag_module *ag_nn_sigmoid(void); /* nn.Sigmoid() */
AG_API ag_module *ag_nn_tanh(void);    /* nn.Tanh() */
AG_API ag_module *ag_nn_softmax(int dim);     /* nn.Softmax(dim) */
AG_API ag_module *ag_nn_log_softmax(int dim); /* nn.LogSoftmax(dim) */
/* The activations of docs/nn-activations.md; each forward is its functional op.  C has no
 * default arguments: PyTorch's defaults are given in brackets.  Printing follows PyTorch's
 * repr, e.g. "LeakyReLU(negative_slope=0.01)", "Softplus(beta=1, threshold=20)". */
AG_API ag_module *ag_nn_leaky_relu(double negative_slope); /* nn.LeakyReLU(negative_slope [0.01]) */
AG_API ag_module *ag_nn_elu(double alpha);                 /* nn.ELU(alpha [1.0]) */
AG_API ag_module *ag_nn_selu(void);                        /* nn.SELU() */
AG_API ag_module *ag_nn_celu(double alpha);                /* nn.CELU(alpha [1.0]); alpha 0 fails in forward */
/* nn.Softplus(beta [1], threshold [20]); whole-number options print as ints, as PyTorch's defaults. */
AG_API ag_module *ag_nn_softplus(double beta, double threshold);
/* nn.GELU(approximate ['none']): tanh_approx true is approximate='tanh' (ag_gelu_tanh). */
AG_API ag_module *ag_nn_gelu(bool tanh_approx);
AG_API ag_module *ag_nn_silu(void); /* nn.SiLU() */
AG_API ag_module *ag_nn_mish(void); /* nn.Mish() */
/* nn.Hardtanh(min_val [-1.0], max_val [1.0]); AG_ERR_ARG unless max_val > min_val (as PyTorch). */
AG_API ag_module *ag_nn_hardtanh(double min_val, double max_val);
AG_API ag_module *ag_nn_relu6(void);       /* nn.ReLU6() */
AG_API ag_module *ag_nn_hardsigmoid(void); /* nn.Hardsigmoid() */
AG_API ag_module *ag_nn_hardswish(void);   /* nn.Hardswish() */
AG_API ag_module *ag_nn_softsign(void);    /* nn.Softsign() */
AG_API ag_module *ag_nn_binary_step(void); /* BinaryStep() (not in PyTorch): ag_binary_step */
AG_API ag_module *ag_nn_logsigmoid(void);   /* nn.LogSigmoid() */
AG_API ag_module *ag_nn_tanhshrink(void);   /* nn.Tanhshrink() */
AG_API ag_module *ag_nn_gaussian(void);     /* Gaussian() (not in PyTorch): ag_gaussian */
AG_API ag_module *ag_nn_gelu_sigmoid(void); /* GELUSigmoid() (not in PyTorch): ag_gelu_sigmoid */
AG_API ag_module *ag_nn_softmin(int dim);   /* nn.Softmin(dim) */
AG_API ag_module *ag_nn_glu(int dim);       /* nn.GLU(dim [-1]) */
AG_API ag_module *ag_nn_threshold(double threshold, double value); /* nn.Threshold(threshold, value) */
/* nn.Softshrink(lambd [0.5]); AG_ERR_ARG for lambd < 0 (as PyTorch's forward). */
AG_API ag_module *ag_nn_softshrink(double lambd);
AG_API ag_module *ag_nn_hardshrink(double lambd); /* nn.Hardshrink(lambd [0.5]) */
/* nn.RReLU(lower [1/8], upper [1/3]): random slopes in training mode, their mean in eval
 * mode (ag_rrelu); AG_ERR_ARG unless lower <= upper, both finite. */
AG_API ag_module *ag_nn_rrelu(double lower, double upper);

/* ---- composite activations (nn/activation_composite.c; torch.nn.functional) -------------
 * Built from other ops, so differentiable to any order.  Each takes a float32/float64 x
 * (else NULL with AG_ERR_DTYPE) and returns a new tensor owned as any op result, NULL on
 * failure with the error recorded.  Gradients at the kinks follow PyTorch. */
/* F.logsigmoid: log σ(x) = min(x, 0) - log1p(e^-|x|). */
AG_API ag_tensor *ag_logsigmoid(ag_tensor *x);
/* F.softmin(x, dim): softmax(-x, dim). */
AG_API ag_tensor *ag_softmin(ag_tensor *x, int dim);
/* F.glu(x, dim): a·σ(b) for the halves a, b of x along dim; AG_ERR_SHAPE for an odd size or
 * a 0-d x, AG_ERR_INDEX for a dim out of range. */
AG_API ag_tensor *ag_glu(ag_tensor *x, int dim);
/* F.threshold(x, threshold, value): x <= threshold ? value : x (derivative 0 there, else 1). */
AG_API ag_tensor *ag_threshold(ag_tensor *x, double threshold, double value);
/* F.softshrink(x, lambd [0.5]): x ∓ λ beyond ±λ, else 0 (NaN gives 0, as PyTorch);
 * AG_ERR_ARG for lambd < 0. */
AG_API ag_tensor *ag_softshrink(ag_tensor *x, double lambd);
/* F.hardshrink(x, lambd [0.5]): |x| <= λ ? 0 : x. */
AG_API ag_tensor *ag_hardshrink(ag_tensor *x, double lambd);
/* F.tanhshrink: x - tanh(x). */
AG_API ag_tensor *ag_tanhshrink(ag_tensor *x);
/* The Gaussian activation of the course material: e^(-x²). */
AG_API ag_tensor *ag_gaussian(ag_tensor *x);
/* GELU's sigmoid approximation (Hendrycks & Gimpel): x·σ(1.702·x). */
AG_API ag_tensor *ag_gelu_sigmoid(ag_tensor *x);
/* F.rrelu(x, lower [1/8], upper [1/3], training): x > 0 ? x : a·x, a drawn per element
 * from U(lower, upper) by the global generator when training, (lower + upper)/2 otherwise
 * (then it is ag_leaky_relu); the derivative is a where x <= 0.  AG_ERR_ARG unless
 * lower <= upper, both finite. */
AG_API ag_tensor *ag_rrelu(ag_tensor *x, double lower, double upper, bool training);

/* ---- normalisation, regularisation, activation layers (docs/nn-layers.md) ------------------- */
/* nn.BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)
 * for [N, C] or [N, C, L] inputs.  Parameters weight (ones) and bias (zeros) [C] when affine;
 * buffers running_mean (zeros), running_var (ones) [C] and num_batches_tracked (int64, 0-d)
 * when track_running_stats, named as PyTorch's so state dicts interchange.  Training mode
 * normalises with the batch statistics and updates the running ones (ag_batch_norm);
 * momentum NAN stands for PyTorch's None (cumulative average, factor 1/num_batches_tracked).
 * Eval mode uses the running statistics (batch ones when they are not tracked). */
AG_API ag_module *ag_nn_batch_norm1d(int64_t num_features, double eps, double momentum, bool affine,
                                     bool track_running_stats);
/* nn.BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
 * the same over [N, C, H, W] inputs (statistics per channel over N·H·W values; AG_ERR_SHAPE
 * for another number of dims, as PyTorch's "expected 4D input"). */
AG_API ag_module *ag_nn_batch_norm2d(int64_t num_features, double eps, double momentum, bool affine,
                                     bool track_running_stats);
/* nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True): ag_layer_norm over the
 * trailing dims, with weight (ones) and bias (zeros) of shape normalized_shape when affine. */
AG_API ag_module *ag_nn_layer_norm(ag_shape normalized_shape, double eps, bool elementwise_affine);
/* nn.GroupNorm(num_groups, num_channels, eps=1e-5, affine=True): ag_group_norm over [N, C, *], with
 * weight (ones) and bias (zeros) [num_channels] when affine.  AG_ERR_ARG, as PyTorch's constructor, when
 * num_channels is not divisible by num_groups (or num_groups < 1). */
AG_API ag_module *ag_nn_group_norm(int64_t num_groups, int64_t num_channels, double eps, bool affine);
/* nn.InstanceNorm2d(num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False) over
 * [N, C, H, W] or [C, H, W]: each (n, c) plane normalised with its own statistics (ag_group_norm with C
 * groups), weight and bias [C] when affine.  With track_running_stats, buffers running_mean, running_var
 * and num_batches_tracked (never incremented, as PyTorch's): training moves the running statistics by
 * momentum towards the planes' mean and unbiased variance averaged over N, eval normalises with them.
 * AG_ERR_ARG for num_features < 1 or momentum NAN (PyTorch's None is not supported). */
AG_API ag_module *ag_nn_instance_norm2d(int64_t num_features, double eps, double momentum, bool affine,
                                        bool track_running_stats);
/* nn.Dropout(p=0.5): ag_dropout in training mode, the identity in eval mode.  0 <= p <= 1. */
AG_API ag_module *ag_nn_dropout(double p);
/* nn.Dropout2d(p=0.5): ag_dropout2d in training mode, the identity in eval mode.  0 <= p <= 1. */
AG_API ag_module *ag_nn_dropout2d(double p);
/* GaussianNoise(std) (not in PyTorch): adds independent N(0, std²) noise to every element in
 * training mode, the identity in eval mode.  std >= 0. */
AG_API ag_module *ag_nn_gaussian_noise(double std);
/* nn.PReLU(num_parameters=1, init=0.25): ag_prelu with a weight [num_parameters] of init. */
AG_API ag_module *ag_nn_prelu(int64_t num_parameters, double init);

/* ---- convolution and pooling layers (docs/conv.md) --------------------------------------------- */
/* nn.Conv2d(in_channels, out_channels, (kernel_h, kernel_w), stride, padding, dilation, groups, bias):
 * ag_conv2d with parameters weight [out, in/groups, kernel_h, kernel_w] and bias [out] (when bias),
 * float32, initialised as PyTorch: U(-1/√fan_in, 1/√fan_in) for both (kaiming_uniform with a=√5),
 * fan_in = in/groups·kernel_h·kernel_w.  o: the options (NULL: PyTorch's defaults).  AG_ERR_ARG,
 * as PyTorch's constructor, for channels < 1 or not divisible by groups, a kernel < 1, a negative
 * option, "same" with a stride.  Prints as PyTorch's repr. */
AG_API ag_module *ag_nn_conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                               const ag_conv_opts *o, bool bias);
/* nn.Conv1d(in_channels, out_channels, kernel, ...): the same over [N, C, L], weight [out, in/groups, kernel],
 * the options' entry 0. */
AG_API ag_module *ag_nn_conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel, const ag_conv_opts *o,
                               bool bias);
/* nn.ConvTranspose2d(in_channels, out_channels, (kernel_h, kernel_w), stride, padding, output_padding,
 * groups, bias, dilation): ag_conv_transpose2d with parameters weight [in, out/groups, kernel_h,
 * kernel_w] and bias [out] (when bias), float32, initialised as PyTorch: U(-1/√fan_in, 1/√fan_in),
 * fan_in = out/groups·kernel_h·kernel_w (PyTorch reads it from the weight's dim 1).  AG_ERR_ARG as
 * ag_nn_conv2d, and for an output_padding not below the stride or the dilation. */
AG_API ag_module *ag_nn_conv_transpose2d(int64_t in_channels, int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                                         const ag_conv_transpose_opts *o, bool bias);
/* nn.ConvTranspose1d: the same over [N, C, L], weight [in, out/groups, kernel], the options' entry 0. */
AG_API ag_module *ag_nn_conv_transpose1d(int64_t in_channels, int64_t out_channels, int64_t kernel,
                                         const ag_conv_transpose_opts *o, bool bias);
/* nn.MaxPool2d / MaxPool1d, nn.AvgPool2d / AvgPool1d: the pooling function with the options o
 * (required: the kernel size; the 1-d modules read entry 0).  No return_indices: call
 * ag_max_pool2d for them.  AG_ERR_ARG for a kernel < 1, a negative option, or a dilation
 * for average pooling; other option errors are reported by the forward, as PyTorch's.
 * Each value prints as an int when its two entries agree, else as a tuple. */
AG_API ag_module *ag_nn_max_pool2d(const ag_pool_opts *o);
AG_API ag_module *ag_nn_max_pool1d(const ag_pool_opts *o);
AG_API ag_module *ag_nn_avg_pool2d(const ag_pool_opts *o);
AG_API ag_module *ag_nn_avg_pool1d(const ag_pool_opts *o);
/* nn.AdaptiveAvgPool2d((out_h, out_w)): ag_adaptive_avg_pool2d.  AG_ERR_ARG for a negative size. */
AG_API ag_module *ag_nn_adaptive_avg_pool2d(int64_t out_h, int64_t out_w);
/* nn.AdaptiveMaxPool2d((out_h, out_w)): ag_adaptive_max_pool2d (no return_indices: call the
 * function for them).  AG_ERR_ARG for a negative size. */
AG_API ag_module *ag_nn_adaptive_max_pool2d(int64_t out_h, int64_t out_w);
/* nn.ZeroPad2d((left, right, top, bottom)), nn.ReflectionPad2d(...), nn.ReplicationPad2d(...):
 * ag_pad of the last two dims in constant (zeros), reflect and replicate mode; negative
 * entries crop.  Print as PyTorch's: "ZeroPad2d((1, 2, 3, 4))".  Errors are the forward's. */
AG_API ag_module *ag_nn_zero_pad2d(int64_t left, int64_t right, int64_t top, int64_t bottom);
AG_API ag_module *ag_nn_reflection_pad2d(int64_t left, int64_t right, int64_t top, int64_t bottom);
AG_API ag_module *ag_nn_replication_pad2d(int64_t left, int64_t right, int64_t top, int64_t bottom);
/* nn.Upsample(size or scale_factor, mode, align_corners): ag_interpolate with a copy of o.
 * AG_ERR_ARG for NULL options, both or neither of size and scale_factor, an unknown mode;
 * other errors are the forward's.  Prints as PyTorch's: "Upsample(scale_factor=2.0,
 * mode=nearest)" (a value whose two entries agree prints once). */
AG_API ag_module *ag_nn_upsample(const ag_interp_opts *o);

/* ---- embedding (docs/nn-layers.md) ---------------------------------------------------------------- */
/* nn.Embedding(num_embeddings, embedding_dim, padding_idx): ag_embedding of its int64 input with
 * parameter weight [num_embeddings, embedding_dim], float32, drawn from N(0, 1) with the padding row
 * zeroed, as PyTorch.  padding_idx: a row in [-num_embeddings, num_embeddings) (negative counts from
 * the end, stored and printed resolved) that gets no gradient, or AG_NO_PADDING_IDX.  AG_ERR_ARG for a
 * negative size, AG_ERR_INDEX for padding_idx out of range.  No max_norm. */
AG_API ag_module *ag_nn_embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx);

/* ---- recurrent layers (docs/sequence.md) ------------------------------------------------------- */
/* nn.RNN(input_size, hidden_size, num_layers [1], nonlinearity ["tanh"; NULL: tanh, or "relu"],
 * bias [true], batch_first [false], dropout [0], bidirectional [false]), nn.LSTM and nn.GRU with the
 * same options (no nonlinearity; no proj_size).  Parameters per layer l and direction, named as
 * PyTorch's so state dicts interchange: weight_ih_l<l> [G·hidden, in] (in = input_size for layer 0,
 * directions·hidden_size above), weight_hh_l<l> [G·hidden, hidden], bias_ih_l<l> and bias_hh_l<l>
 * [G·hidden] (when bias), with the suffix "_reverse" for the second direction; G = 1 (RNN), 4
 * (LSTM: gates i, f, g, o) or 3 (GRU: r, z, n).  All float32, drawn U(-1/√hidden, 1/√hidden) from this
 * thread's generator, as PyTorch's reset_parameters.  dropout is applied (in training mode) to the
 * outputs of every layer but the last.  Prints as PyTorch's repr (RNN's nonlinearity is not shown,
 * as there).  NULL with AG_ERR_ARG for dropout outside [0, 1], hidden_size or num_layers < 1, a
 * negative or too large input_size, an unknown nonlinearity.  ag_module_forward(m, x) returns the
 * output with zero initial states; ag_rnn_forward gives the states. */
AG_API ag_module *ag_nn_rnn(int64_t input_size, int64_t hidden_size, int num_layers, const char *nonlinearity, bool bias,
                            bool batch_first, double dropout, bool bidirectional);
AG_API ag_module *ag_nn_lstm(int64_t input_size, int64_t hidden_size, int num_layers, bool bias, bool batch_first,
                             double dropout, bool bidirectional);
AG_API ag_module *ag_nn_gru(int64_t input_size, int64_t hidden_size, int num_layers, bool bias, bool batch_first,
                            double dropout, bool bidirectional);
/* output, (h_n, c_n) = m(x, (h0, c0)) for an RNN, LSTM or GRU module m.  x: [T, B, input_size]
 * ([B, T, input_size] with batch_first), or [T, input_size] unbatched.  h0, c0: the initial states
 * [layers·directions, B, hidden] ([layers·directions, hidden] unbatched), NULL for zeros; c0 only
 * for an LSTM.  lengths: NULL, or B sequence lengths in [0, T] (any order) for a padded batch: the
 * results are PyTorch's for pack_padded_sequence(x, lengths) through the layer then
 * pad_packed_sequence(total_length=T): output is zero past each sequence's end, h_n and c_n hold
 * each sequence's state at its last step (the forward direction) and after its first step (the
 * reverse direction, which starts at the sequence's own end); a length 0 keeps h0 (PyTorch refuses
 * it).  Writes, for each non-NULL pointer: *output [T, B, directions·hidden] (batch-first or
 * unbatched as x), *h_n and *c_n (as h0), new tensors owned by the innermost scope (else by the
 * caller), differentiable in x, h0, c0 and every parameter.  Returns AG_OK or: AG_ERR_ARG (m not one
 * of these layers, NULL x, c0 or c_n for a non-LSTM), AG_ERR_SHAPE (x not 2-D or 3-D, its last size
 * not input_size, no time step, a state of the wrong shape), AG_ERR_VALUE (a length outside
 * [0, T]), AG_ERR_DTYPE (x or a state not of the parameters' dtype), AG_ERR_NOMEM. */
AG_API ag_status ag_rnn_forward(ag_module *m, ag_tensor *x, ag_tensor *h0, ag_tensor *c0, const int64_t *lengths,
                                ag_tensor **output, ag_tensor **h_n, ag_tensor **c_n);
/* nn.RNNCell(input_size, hidden_size, bias [true], nonlinearity ["tanh"; NULL: tanh, or "relu"]),
 * nn.LSTMCell(input_size, hidden_size, bias) and nn.GRUCell(input_size, hidden_size, bias): one
 * time step, with parameters weight_ih [G·hidden, input_size], weight_hh [G·hidden, hidden],
 * bias_ih, bias_hh [G·hidden] (when bias), initialised as the layers'.  AG_ERR_ARG for a negative or
 * too large size, an unknown nonlinearity.  ag_module_forward(cell, x) is the step from zero states. */
AG_API ag_module *ag_nn_rnn_cell(int64_t input_size, int64_t hidden_size, bool bias, const char *nonlinearity);
AG_API ag_module *ag_nn_lstm_cell(int64_t input_size, int64_t hidden_size, bool bias);
AG_API ag_module *ag_nn_gru_cell(int64_t input_size, int64_t hidden_size, bool bias);
/* h' = cell(x, h) (RNNCell, GRUCell), or h', c' = cell(x, (h, c)) (LSTMCell, c' written to *c_out
 * when c_out is not NULL).  x: [B, input_size] or [input_size] unbatched; h, c: [B, hidden] (or
 * [hidden]), NULL for zeros.  Results owned by the innermost scope, differentiable.  NULL with
 * AG_ERR_ARG (not a cell, c for a non-LSTM cell), AG_ERR_SHAPE (x not 1-D or 2-D, sizes that do not
 * fit), AG_ERR_DTYPE; NULL x passes through. */
AG_API ag_tensor *ag_rnn_cell_forward(ag_module *cell, ag_tensor *x, ag_tensor *h, ag_tensor *c, ag_tensor **c_out);

/* torch.nn.utils.rnn.pad_sequence(seqs, batch_first, padding_value): the n sequences [L_i, *] (one
 * dtype, the same trailing dims) stacked into [T, n, *] ([n, T, *] with batch_first), T = max L_i,
 * each padded with padding_value after its end.  Differentiable in each sequence.  Pass the L_i as
 * ag_rnn_forward's lengths.  NULL with AG_ERR_ARG (n < 1), AG_ERR_SHAPE (a 0-d sequence, trailing
 * dims that differ), AG_ERR_DTYPE (mixed dtypes); a NULL sequence gives NULL. */
AG_API ag_tensor *ag_pad_sequence(ag_tensor *const *seqs, int n, bool batch_first, double padding_value);

/* ---- attention and Transformer (docs/sequence.md#attention-and-transformer) ------------------ */
/* MultiheadAttention's forward options (ag_module_forward_n's opts; NULL: AG_MHA_DEFAULTS). */
typedef struct ag_mha_opts {
    bool need_weights;         /* write the attention weights as the second output (PyTorch's default: true) */
    bool average_attn_weights; /* weights averaged over the heads [B, L, S], else per head [B, H, L, S] (true) */
    bool is_causal;            /* mask key j > query i without a mask tensor; excludes attn_mask (false) */
} ag_mha_opts;
#define AG_MHA_DEFAULTS {true, true, false}
/* nn.MultiheadAttention(embed_dim, num_heads, dropout [0], bias [true], kdim, vdim [0: embed_dim],
 * batch_first [false]), without add_bias_kv and add_zero_attn (ag_nn_multihead_attention_ex has
 * them).  Parameters, named as PyTorch's:
 * in_proj_weight [3E, E] when kdim = vdim = E, else q_proj_weight [E, E], k_proj_weight [E, kdim],
 * v_proj_weight [E, vdim]; in_proj_bias [3E] (when bias); the child out_proj (a Linear(E, E, bias)
 * printed as NonDynamicallyQuantizableLinear).  Initialised as PyTorch's: Xavier uniform for the
 * input projections, zero biases, out_proj.weight as a Linear's; float32.  Prints as PyTorch's.
 * AG_ERR_ARG for embed_dim or num_heads < 1, embed_dim not divisible by num_heads, dropout outside
 * [0, 1], a negative or too large size.
 * Forward: ag_module_forward_n(m, n_in, {query, key, value, key_padding_mask, attn_mask}, opts
 * (ag_mha_opts or NULL), n_out, {output, weights}) computes
 *     attn_output, attn_output_weights = m(query, key, value, key_padding_mask, need_weights,
 *                                          attn_mask, average_attn_weights)
 * query [L, B, E], key [S, B, kdim], value [S, B, vdim] ([B, L, E]... with batch_first; [L, E]...
 * unbatched); NULL key is query, NULL value is key.  key_padding_mask [B, S] ([S] unbatched) and
 * attn_mask [L, S] or [B·num_heads, L, S]: bool (true: the key is NOT attended to) or of the
 * queries' dtype (added to the scores), either may be NULL.  output is shaped as query; weights
 * (out[1], written when n_out is 2 and need_weights) [B, L, S] or [B, num_heads, L, S], after
 * dropout.  Dropout (training mode) on the attention probabilities.  Differentiable in query, key,
 * value and every parameter.  A query with every key masked gives NaN when the weights are asked
 * for (as PyTorch), zeros otherwise (ag_scaled_dot_product_attention).  AG_ERR_SHAPE, AG_ERR_DTYPE
 * (inputs not of the parameters' dtype, masks neither bool nor that dtype), AG_ERR_VALUE (is_causal
 * with attn_mask).  ag_module_forward(m, x) is the self-attention output of x, without weights. */
AG_API ag_module *ag_nn_multihead_attention(int64_t embed_dim, int64_t num_heads, double dropout, bool bias,
                                            int64_t kdim, int64_t vdim, bool batch_first);
/* nn.MultiheadAttention with all of PyTorch's arguments, in its order: ag_nn_multihead_attention
 * plus add_bias_kv (the parameters bias_k and bias_v [1, 1, E], Xavier normal, appended to the
 * projected keys and values of every batch entry as one more source position) and add_zero_attn
 * (one more key and value of zeros, per head, after those).  attn_mask and key_padding_mask keep
 * the source length S of the key; the extra positions are attended by every query, and the
 * weights are [B, L, S + extra] ([B, num_heads, L, S + extra]).  Same errors. */
AG_API ag_module *ag_nn_multihead_attention_ex(int64_t embed_dim, int64_t num_heads, double dropout, bool bias,
                                               bool add_bias_kv, bool add_zero_attn, int64_t kdim, int64_t vdim,
                                               bool batch_first);
/* The Transformer layers' forward options (ag_module_forward_n's opts; NULL: all false). */
typedef struct ag_transformer_opts {
    bool is_causal; /* apply the causal mask (as src_mask = generate_square_subsequent_mask(L)); excludes src_mask */
} ag_transformer_opts;
/* nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward [2048], dropout [0.1], activation
 * ["relu"; NULL: relu, or "gelu"], layer_norm_eps [1e-5], batch_first [false], norm_first [false]):
 * children self_attn (MultiheadAttention(d_model, nhead, dropout, batch_first)), linear1, dropout,
 * linear2, norm1, norm2, dropout1, dropout2, as PyTorch's (names, print text, state dict).
 *     x = norm1(x + sa(x)), x = norm2(x + ff(x))        (norm_first false)
 *     x = x + sa(norm1(x)), x = x + ff(norm2(x))        (norm_first true)
 * sa(x) = dropout1(self_attn(x, x, x)), ff(x) = dropout2(linear2(dropout(act(linear1(x))))).
 * Forward: ag_module_forward(m, src), or ag_module_forward_n(m, n_in, {src, src_mask,
 * src_key_padding_mask}, opts (ag_transformer_opts or NULL), 1, {output}) with the masks of
 * MultiheadAttention (attn_mask and key_padding_mask); src [S, B, d_model] ([B, S, d_model] with
 * batch_first, [S, d_model] unbatched).  AG_ERR_ARG for an unknown activation, a negative
 * dim_feedforward or layer_norm_eps, and MultiheadAttention's errors. */
AG_API ag_module *ag_nn_transformer_encoder_layer(int64_t d_model, int64_t nhead, int64_t dim_feedforward,
                                                  double dropout, const char *activation, double layer_norm_eps,
                                                  bool batch_first, bool norm_first);
/* nn.TransformerEncoder(encoder_layer, num_layers, norm [NULL]): the child "layers", a ModuleList of
 * num_layers layers that start equal to encoder_layer (PyTorch's deep copies; encoder_layer itself
 * is layer 0), and the child "norm" when norm is not NULL, applied last.  Takes ownership of
 * encoder_layer and norm, even on failure (not of one that has a parent).  Forward as the layer's
 * (the masks and is_causal go to every layer).  No nested-tensor fast path: padded positions get
 * the values PyTorch gives with grad enabled.  AG_ERR_ARG when encoder_layer is not a
 * TransformerEncoderLayer or has a parent, num_layers < 1, norm has a parent; NULL encoder_layer
 * (a failed constructor) gives NULL and keeps the message recorded. */
AG_API ag_module *ag_nn_transformer_encoder(ag_module *encoder_layer, int num_layers, ag_module *norm);
/* nn.Transformer.generate_square_subsequent_mask(sz): a new [sz, sz] causal mask, owned as any new
 * tensor.  Floating dtype: -inf above the diagonal, 0 elsewhere (PyTorch's); AG_BOOL: true above
 * the diagonal (masked, as MultiheadAttention reads bool masks: torch.triu(ones, 1).bool()).
 * NULL with AG_ERR_ARG (sz < 0), AG_ERR_DTYPE (an integer dtype). */
AG_API ag_tensor *ag_generate_square_subsequent_mask(int64_t sz, ag_dtype dtype);
/* Sinusoidal positional encodings ("Attention is all you need", PyTorch's tutorial): a new
 * [max_len, d_model] tensor, PE[p, 2i] = sin(p·ω_i), PE[p, 2i+1] = cos(p·ω_i),
 * ω_i = 10000^(-2i/d_model) (an odd d_model ends in a sine column).  Add its first L rows to
 * embeddings [.., L, d_model].  NULL with AG_ERR_ARG (a negative or too large size), AG_ERR_DTYPE
 * (not floating). */
AG_API ag_tensor *ag_sinusoidal_positional_encoding(int64_t max_len, int64_t d_model, ag_dtype dtype);

/* ---- functional (torch.nn.functional) ------------------------------------------------------- */
/* F.dropout: with training, zeroes each element with probability p (from this thread's
 * generator) and scales the kept ones by 1/(1 - p): y = x·mask, differentiable through the
 * mask.  Returns x itself when !training, p == 0 or x is empty; x·0 when p == 1.
 * AG_ERR_ARG unless 0 <= p <= 1. */
AG_API ag_tensor *ag_dropout(ag_tensor *x, double p, bool training);
/* F.dropout2d: with training, zeroes whole channels: each [n, c] slice of x [N, C, *] is kept with
 * probability 1 - p (one draw per channel, from this thread's generator) and scaled by 1/(1 - p),
 * else zeroed; y = x·m with m [N, C, 1, ...], differentiable through the mask.  A 3-D input is
 * [N, C, L], as PyTorch 1.13 treats it.  Returns x itself when !training, p == 0 or x is empty;
 * x·0 when p == 1.  AG_ERR_ARG for p outside [0, 1], AG_ERR_SHAPE for fewer than 2 dims. */
AG_API ag_tensor *ag_dropout2d(ag_tensor *x, double p, bool training);
/* y = x + std·N(0, 1) elementwise when training (dy passes unchanged); x itself otherwise. */
AG_API ag_tensor *ag_gaussian_noise(ag_tensor *x, double std, bool training);

/* ---- initialisation (torch.nn.init, docs/nn-init.md) ---------------------------------------- */
/* Each fills t in place with values from this thread's generator (ag_manual_seed), converted
 * to t's dtype, bumping its version, and returns t; NULL with an error otherwise.  They write
 * the data directly, as PyTorch does under no_grad, so parameters may be passed.  Random
 * fills need a floating tensor; zero-element tensors are left alone. */
/* The recommended gain for a nonlinearity: "linear", "conv1d/2d/3d", "conv_transpose1d/2d/3d",
 * "sigmoid" 1; "tanh" 5/3; "relu" √2; "leaky_relu" √(2/(1 + slope²)) with slope = param
 * (NAN: PyTorch's default 0.01); "selu" 3/4.  NAN with AG_ERR_ARG for another name. */
AG_API double ag_init_calculate_gain(const char *nonlinearity, double param);
/* fan_in = size(1)·receptive field, fan_out = size(0)·receptive field (the product of the
 * dims after 1).  AG_ERR_SHAPE for fewer than 2 dims.  Either pointer may be NULL. */
AG_API ag_status ag_init_calculate_fan_in_and_fan_out(const ag_tensor *t, int64_t *fan_in, int64_t *fan_out);
/* U(a, b) (PyTorch's defaults 0, 1), N(mean, std²) (0, 1). */
AG_API ag_tensor *ag_init_uniform_(ag_tensor *t, double a, double b);
AG_API ag_tensor *ag_init_normal_(ag_tensor *t, double mean, double std);
/* N(mean, std²) truncated to [a, b] by the inverse-CDF method, as PyTorch (0, 1, -2, 2). */
AG_API ag_tensor *ag_init_trunc_normal_(ag_tensor *t, double mean, double std, double a, double b);
/* Every element = val / 0 / 1 (any dtype). */
AG_API ag_tensor *ag_init_constant_(ag_tensor *t, double val);
AG_API ag_tensor *ag_init_zeros_(ag_tensor *t);
AG_API ag_tensor *ag_init_ones_(ag_tensor *t);
/* The identity matrix (2-D only). */
AG_API ag_tensor *ag_init_eye_(ag_tensor *t);
/* The Dirac delta (3-, 4- or 5-d convolution weights [out, in, k...]): 1 at the kernel's
 * centre of w[g·(out/groups) + d, d] for d < min(out/groups, in), 0 elsewhere, so that
 * the convolution keeps the first input channels of each group (PyTorch's groups 1).
 * AG_ERR_SHAPE for another ndim, AG_ERR_ARG unless groups >= 1 divides size(0). */
AG_API ag_tensor *ag_init_dirac_(ag_tensor *t, int groups);
/* The sparse initialisation of Martens (2010), as torch.nn.init.sparse_ (2-D only): N(0, std²)
 * (PyTorch's std default 0.01), then ⌈sparsity·rows⌉ random rows of each column set to 0.
 * AG_ERR_SHAPE unless 2-D, AG_ERR_ARG unless 0 <= sparsity <= 1 and std is finite and >= 0. */
AG_API ag_tensor *ag_init_sparse_(ag_tensor *t, double sparsity, double std);
/* Glorot: std = gain·√(2/(fan_in + fan_out)); uniform on ±√3·std or normal (gain default 1). */
AG_API ag_tensor *ag_init_xavier_uniform_(ag_tensor *t, double gain);
AG_API ag_tensor *ag_init_xavier_normal_(ag_tensor *t, double gain);
/* He: std = calculate_gain(nonlinearity, a)/√fan with fan = fan_in or fan_out (mode);
 * uniform on ±√3·std or normal.  mode NULL: "fan_in"; nonlinearity NULL: "leaky_relu"
 * (PyTorch's defaults, with a = 0). */
AG_API ag_tensor *ag_init_kaiming_uniform_(ag_tensor *t, double a, const char *mode, const char *nonlinearity);
AG_API ag_tensor *ag_init_kaiming_normal_(ag_tensor *t, double a, const char *mode, const char *nonlinearity);
/* A (semi-)orthogonal matrix times gain: t seen as [size(0), numel/size(0)] (2+ dims) gets the
 * Q factor (Householder QR) of a standard normal matrix, with PyTorch's sign correction, so that
 * rows or columns are orthonormal. */
AG_API ag_tensor *ag_init_orthogonal_(ag_tensor *t, double gain);

/* ---- weight reparametrisations (torch.nn.utils.weight_norm, spectral_norm) ---------- */
/* weight_norm(module, name, dim): replaces the parameter name (e.g. "weight") by name_g =
 * ‖w‖ over every dim but dim (kept as size-1 dims; dim −1: the whole tensor, PyTorch's
 * None, a 0-d name_g) and name_v = the old tensor itself (same handle), and adds a forward
 * pre-hook that recomputes w = name_v · name_g/‖name_v‖ before every forward, so the
 * gradient reaches g and v.  The module's forward (and ag_module_get_parameter(m, name))
 * sees w, which is neither a parameter nor in the state dict.  Parameter order as PyTorch's
 * (name_g, name_v after the others).  AG_ERR_ARG for a NULL module or name, a name that is
 * not a parameter, a dim out of range, or a name that already has a parametrisation. */
AG_API ag_status ag_weight_norm(ag_module *m, const char *name, int dim);
/* remove_weight_norm: name becomes a plain parameter holding the current w (a new tensor);
 * name_g, name_v and the hook go.  AG_ERR_ARG when name has no weight_norm. */
AG_API ag_status ag_remove_weight_norm(ag_module *m, const char *name);
/* spectral_norm(module, name, n_power_iterations, eps, dim): w = name_orig / σ with σ ≈ the
 * largest singular value of name_orig as a matrix [size(dim), rest], σ = uᵀ·W·v from the
 * buffers name_u [size(dim)] and name_v [rest] (made N(0, 1), normalised), which every
 * training-mode forward first advances by n_power_iterations steps of v ← normalize(Wᵀu),
 * u ← normalize(Wv) (normalize(x) = x/max(‖x‖, eps)); eval-mode forwards use them as they
 * are.  name_orig is the old tensor (same handle); before the first forward, name reads it
 * unnormalised, as PyTorch.  dim −1 is PyTorch's None: 1 for ConvTranspose modules, else 0.
 * PyTorch's defaults: 1, 1e-12.  AG_ERR_ARG as ag_weight_norm, and for n_power_iterations < 0
 * or eps not finite and > 0. */
AG_API ag_status ag_spectral_norm(ag_module *m, const char *name, int n_power_iterations, double eps, int dim);
/* remove_spectral_norm: name becomes a plain parameter holding name_orig/σ with the current
 * u and v (no power iteration); name_orig, name_u, name_v and the hook go. */
AG_API ag_status ag_remove_spectral_norm(ag_module *m, const char *name);

/* ---- flat parameter buffers (torch.nn.utils) ------------------------------------- */
/* Moves the data of the n parameters, in order, into one new contiguous 1-D tensor
 * and gives each parameter that requires grad a .grad that is a view into a second
 * 1-D tensor of the same layout, so that a whole model can be read or written as
 * one tensor: a data-parallel all-reduce of the gradients, or a broadcast of the
 * weights, is one call on *flat_grads or *flat_params.  The parameter handles stay
 * the same, and so do their values (and any existing .grad, copied in).  From then
 * on backward adds into the gradient views in place, and ag_zero_grad (and with it
 * the optimizer's and module's zero_grad) zeros them in place instead of dropping
 * them.  Writes into *flat_params change the parameters; the parameters share
 * *flat_params's version counter, as PyTorch's views share their base's.
 * Returns AG_OK and, for each non-NULL out pointer, a new 1-D tensor of the total
 * size, owned like any new tensor (by the innermost scope, else by the caller); the
 * buffers themselves live while any parameter or returned tensor uses them.
 * Fails, changing nothing, with AG_ERR_ARG for n < 1, a NULL parameter, a
 * parameter that is not a leaf, is a view of a larger tensor, shares its data with
 * another listed parameter, or was flattened already; existing views of a
 * parameter follow it into the flat buffer; AG_ERR_DTYPE for mixed or
 * non-float dtypes; AG_ERR_NOMEM. */
AG_API ag_status ag_flatten_parameters(ag_tensor *const *params, int n, ag_tensor **flat_params, ag_tensor **flat_grads);
/* torch.nn.utils.parameters_to_vector: a new 1-D tensor with the n parameters
 * flattened and concatenated in order (a copy, differentiable).  NULL with
 * AG_ERR_ARG for n < 1, as ag_cat for mixed dtypes. */
AG_API ag_tensor *ag_parameters_to_vector(ag_tensor *const *params, int n);
/* torch.nn.utils.vector_to_parameters: copies consecutive slices of the 1-D vec
 * into the n parameters (not recorded; bumps their versions).  AG_ERR_SHAPE when
 * vec is not 1-D or its length differs from the parameters' total. */
AG_API ag_status ag_vector_to_parameters(const ag_tensor *vec, ag_tensor *const *params, int n);

#ifdef __cplusplus
}
#endif
#endif

/*
 * agrad/tensor.h - creating tensors, reading them, views and in-place updates.
 *
 * A tensor is a strided view (shape, strides, offset, all in elements) of a
 * reference-counted storage.  Views share storage with their base; in-place
 * functions (suffix _) bump the storage's version counter, which autograd uses
 * to detect a saved tensor modified before backward.  Negative dims count from
 * the end as in PyTorch.  Every function here follows the error and ownership
 * rules of agrad/core.h: a returned tensor belongs to the innermost scope (or to
 * the caller), NULL means failure with a message in ag_last_error().
 */
#ifndef AGRAD_TENSOR_H
#define AGRAD_TENSOR_H

#include <stdio.h>
#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- creation -------------------------------------------------------- */
/* New contiguous tensors of the given shape and dtype. */
AG_API ag_tensor *ag_empty(ag_shape shape, ag_dtype dtype);
AG_API ag_tensor *ag_zeros(ag_shape shape, ag_dtype dtype);
AG_API ag_tensor *ag_ones(ag_shape shape, ag_dtype dtype);
AG_API ag_tensor *ag_full(ag_shape shape, double value, ag_dtype dtype);
/* A 0-d tensor holding value. */
AG_API ag_tensor *ag_scalar(double value, ag_dtype dtype);
/* [start, end) in steps of step (step != 0), as torch.arange. */
AG_API ag_tensor *ag_arange(double start, double end, double step, ag_dtype dtype);
/* steps evenly spaced values from start to end inclusive, as torch.linspace (one step: [start]). */
AG_API ag_tensor *ag_linspace(double start, double end, int64_t steps, ag_dtype dtype);
/* The n x n identity. */
AG_API ag_tensor *ag_eye(int64_t n, ag_dtype dtype);
/* Uniform on [0, 1) and standard normal values from this thread's generator. */
AG_API ag_tensor *ag_rand(ag_shape shape, ag_dtype dtype);
AG_API ag_tensor *ag_randn(ag_shape shape, ag_dtype dtype);
/* Sampling (core/sample.c), from the same generator: reproducible from ag_manual_seed, with
 * PyTorch's distributions but not its values.  New tensors, no gradient recorded.
 * torch.randint: int64 uniform on [low, high) (low < high, else AG_ERR_VALUE). */
AG_API ag_tensor *ag_randint(int64_t low, int64_t high, ag_shape shape);
/* torch.randperm: a uniformly random permutation of 0..n-1 (int64). */
AG_API ag_tensor *ag_randperm(int64_t n);
/* torch.bernoulli: 1 with probability p[i], else 0, in p's shape and dtype (p float, in [0, 1],
 * else AG_ERR_VALUE). */
AG_API ag_tensor *ag_bernoulli(const ag_tensor *p);
/* torch.normal(mean, std): normal values with per-element mean and std (float, broadcast
 * together; std >= 0).  Not differentiable (PyTorch gives mean and std zero gradients). */
AG_API ag_tensor *ag_normal_tensor(const ag_tensor *mean, const ag_tensor *std);
/* Same shape and dtype as t, filled with zeros / ones / value. */
AG_API ag_tensor *ag_zeros_like(const ag_tensor *t);
AG_API ag_tensor *ag_ones_like(const ag_tensor *t);
AG_API ag_tensor *ag_full_like(const ag_tensor *t, double value);
/* Copies numel(shape) values of dtype's C type (float, double, int64_t, bool as one byte, uint8_t) from data. */
AG_API ag_tensor *ag_from_data(const void *data, ag_shape shape, ag_dtype dtype);
/* Wraps a caller-owned contiguous buffer without copying.  The buffer must
 * outlive every tensor and graph that uses it; agrad never frees it. */
AG_API ag_tensor *ag_from_buffer(void *data, ag_shape shape, ag_dtype dtype);

/* Seeds this thread's random generator: the same seed gives the same values. */
AG_API void ag_manual_seed(uint64_t seed);
/* This thread's generator state (torch.get_rng_state): a new int64 tensor [4]
 * holding the generator's four 64-bit words bit for bit, owned by the current
 * scope; NULL with AG_ERR_NOMEM.  Save it with the model to resume exactly. */
AG_API ag_tensor *ag_get_rng_state(void);
/* Restores a state from ag_get_rng_state (torch.set_rng_state): the values drawn
 * next are those that followed it.  Returns AG_OK, AG_ERR_ARG (NULL), AG_ERR_DTYPE
 * (not int64), AG_ERR_SHAPE (not [4]), AG_ERR_VALUE (all four words zero). */
AG_API ag_status ag_set_rng_state(const ag_tensor *state);
/* torch.multinomial(probs, num_samples, replacement): for each row of probs ([n] or [rows, n],
 * float32 or float64, non-negative weights that need not sum to 1), num_samples category
 * indices drawn with probability proportional to the weights, from this thread's generator;
 * without replacement a category is drawn at most once (so a row needs num_samples positive
 * weights).  Returns a new int64 tensor [num_samples] or [rows, num_samples] owned by the
 * innermost scope.  NULL with AG_ERR_ARG (num_samples < 1, more samples than categories without
 * replacement), AG_ERR_SHAPE (not 1-D or 2-D, no category), AG_ERR_DTYPE, AG_ERR_VALUE (a
 * negative, NaN or infinite weight, a row summing to 0, too few positive weights). */
AG_API ag_tensor *ag_multinomial(const ag_tensor *probs, int64_t num_samples, bool replacement);
/* One sample per row of logits ([n] gives a 0-d result, [rows, n] gives [rows]), as text
 * generation draws the next token: softmax(logits / temperature) restricted to the top_k largest
 * logits (ties with the k-th kept; top_k <= 0 or >= n: all), i.e.
 * torch.multinomial(F.softmax(masked / temperature, -1), 1).  temperature 0 (or top_k 1) is greedy:
 * the index of the first largest logit.  From this thread's generator.  New int64 tensor owned by
 * the innermost scope; NULL with AG_ERR_ARG (temperature negative, NaN or infinite), AG_ERR_SHAPE,
 * AG_ERR_DTYPE as ag_multinomial, AG_ERR_VALUE (a row with no finite largest logit). */
AG_API ag_tensor *ag_sample_logits(const ag_tensor *logits, double temperature, int64_t top_k);

/* ---- properties (t must not be NULL) --------------------------------- */
AG_API int ag_ndim(const ag_tensor *t);
/* Size / stride (in elements) of dimension dim (negative counts from the end).
 * -1 on failure, with the error recorded: AG_ERR_ARG for a NULL t, AG_ERR_INDEX
 * for a dim out of range (a 0-d tensor has no dims). */
AG_API int64_t ag_size(const ag_tensor *t, int dim);
AG_API int64_t ag_stride(const ag_tensor *t, int dim);
AG_API ag_shape ag_shape_of(const ag_tensor *t);
AG_API int64_t ag_numel(const ag_tensor *t);
AG_API ag_dtype ag_dtype_of(const ag_tensor *t);
AG_API bool ag_is_contiguous(const ag_tensor *t);
/* Pointer to t's first element (strides apply: the results of element-wise ops of
 * transposed or permuted inputs, and their clones, keep those inputs' layout, see
 * ops.h; ag_is_contiguous says whether the data is row-major, ag_contiguous makes
 * it so).  Owned by t's storage. */
AG_API void *ag_data(const ag_tensor *t);
/* Storage version counter: bumped by every in-place change. */
AG_API uint32_t ag_version(const ag_tensor *t);
/* Says "I wrote into t's data" (through ag_data or ag_from_buffer's memory, or by
 * MPI): bumps the version counter of t's storage, as an in-place op does
 * (torch.autograd.graph.increment_version), so a graph that saved t for backward
 * fails there with AG_ERR_GRAPH instead of silently using the new values.  Views
 * and flattened parameters share the counter of their storage.  AG_OK, or
 * AG_ERR_ARG for NULL. */
AG_API ag_status ag_increment_version(ag_tensor *t);
/* "float32", "float64", "int64", "bool" or "uint8". */
AG_API const char *ag_dtype_name(ag_dtype dtype);
/* Size in bytes of one element. */
AG_API size_t ag_dtype_size(ag_dtype dtype);

/* ---- reading values --------------------------------------------------- */
/* The value of a one-element tensor; NAN with an error recorded otherwise. */
AG_API double ag_item(const ag_tensor *t);
/* Element at a full index (ndim entries); NAN with an error if out of range. */
AG_API double ag_get(const ag_tensor *t, const int64_t *index);
/* Copies t's values in row-major order into dst (capacity in elements), converting
 * to dst_dtype.  Returns AG_OK or an error (capacity too small, NULL). */
AG_API ag_status ag_copy_to(const ag_tensor *t, void *dst, int64_t capacity, ag_dtype dst_dtype);
/* Writes t as PyTorch prints it: values, then shape, dtype, grad_fn / requires_grad. */
AG_API ag_status ag_fprint(FILE *f, const ag_tensor *t);
AG_API ag_status ag_print(const ag_tensor *t);
/* The same text in a malloc'ed string the caller frees with free(); NULL on failure. */
AG_API char *ag_to_string(const ag_tensor *t);

/* ---- copies and conversions -------------------------------------------- */
/* t itself (retained) when already contiguous, else a contiguous copy.  Differentiable. */
AG_API ag_tensor *ag_contiguous(ag_tensor *t);
/* A copy with its own storage: laid out as t when t is dense in a permuted layout
 * (a transposed tensor: its strides, as PyTorch's clone), else row-major.  A block of
 * its own either way.  Differentiable. */
AG_API ag_tensor *ag_clone(ag_tensor *t);
/* A copy converted to dtype, laid out as t when t is dense in a permuted layout (a
 * transposed tensor: its strides, as PyTorch's .to(dtype)), else row-major; ag_data of
 * it is in memory order (ag_contiguous for row-major).  Differentiable (between float dtypes).  To int64:
 * floats truncate toward zero, and NaN, ±inf and values beyond int64 give
 * INT64_MIN (as PyTorch on x86; the same for every value written into an int64
 * tensor: ag_full, ag_fill_, ag_masked_fill, ...).  To uint8: floats truncate
 * toward zero and values are assumed to lie in 0..255 (as in PyTorch;
 * out-of-range integers wrap modulo 256); to bool: v != 0. */
AG_API ag_tensor *ag_to_dtype(ag_tensor *t, ag_dtype dtype);

/* True when t is an inference tensor: made in inference mode (ag_inference_mode_begin,
 * torch.Tensor.is_inference), or a view of one. */
AG_API bool ag_is_inference(const ag_tensor *t);

/* ---- in-place updates (bump the version counter; return t, NULL on error) */
/* dst = src, broadcasting src to dst's shape; dtypes are converted. */
AG_API ag_tensor *ag_copy_(ag_tensor *dst, const ag_tensor *src);
AG_API ag_tensor *ag_zero_(ag_tensor *t);
AG_API ag_tensor *ag_fill_(ag_tensor *t, double value);
/* t += alpha * other (other broadcast to t's shape) */
AG_API ag_tensor *ag_add_(ag_tensor *t, const ag_tensor *other, double alpha);
AG_API ag_tensor *ag_sub_(ag_tensor *t, const ag_tensor *other);
AG_API ag_tensor *ag_mul_(ag_tensor *t, const ag_tensor *other);
AG_API ag_tensor *ag_div_(ag_tensor *t, const ag_tensor *other);
AG_API ag_tensor *ag_add_scalar_(ag_tensor *t, double s);
AG_API ag_tensor *ag_mul_scalar_(ag_tensor *t, double s);
/* Clamps to [lo, hi]; pass -INFINITY / INFINITY for no bound. */
AG_API ag_tensor *ag_clamp_(ag_tensor *t, double lo, double hi);
/* t = max(t, 0), as torch.relu_ (gradient 0 where t was <= 0). */
AG_API ag_tensor *ag_relu_(ag_tensor *t);
/* t = value where mask (bool, broadcast to t's shape) is true, as
 * torch.Tensor.masked_fill_; t must be floating.  AG_ERR_DTYPE for a mask of another
 * dtype, AG_ERR_SHAPE when it does not broadcast. */
AG_API ag_tensor *ag_masked_fill_(ag_tensor *t, const ag_tensor *mask, double value);
/* Fills with uniform values on [lo, hi) / normal values with mean and std. */
AG_API ag_tensor *ag_uniform_(ag_tensor *t, double lo, double hi);
AG_API ag_tensor *ag_normal_(ag_tensor *t, double mean, double std);
/* Fills with exponential values of rate lambd > 0 (mean 1/lambd), as torch.Tensor.exponential_. */
AG_API ag_tensor *ag_exponential_(ag_tensor *t, double lambd);

#ifdef __cplusplus
}
#endif
#endif

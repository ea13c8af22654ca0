/*
 * nn/internal.h - what nn/ offers the layers above besides agrad/nn.h.  Not installed.
 */
#ifndef AGRAD_NN_INTERNAL_H
#define AGRAD_NN_INTERNAL_H

#include "core/internal.h"
#include "agrad/nn.h"

/* What ag_module_load_state_dict checks (names, shapes, dtypes), without changing m. */
AG_HIDDEN ag_status ag__module_check_state_dict(const ag_module *m, const ag_state_dict *sd, bool strict);

/* Gives m another type and data (the old data freed by the old type's destroy), keeping
 * its parameters, buffers, children, hooks and handle: dist/ turns a BatchNorm into a
 * SyncBatchNorm in place (ag_convert_sync_batch_norm).  Takes data even on failure. */
AG_HIDDEN void ag__module_retype(ag_module *m, const ag_module_type *type, void *data);
/* Whether m is a BatchNorm1d or BatchNorm2d; if so writes its configuration (each
 * pointer may be NULL; momentum NAN for None). */
AG_HIDDEN bool ag__batch_norm_config(const ag_module *m, int64_t *num_features, double *eps, double *momentum,
                                     bool *affine, bool *track_running_stats);
/* Sets a BatchNorm1d/2d's momentum (NAN: None, the cumulative average); false for another module. */
AG_HIDDEN bool ag__batch_norm_set_momentum(ag_module *m, double momentum);

/* nn.Linear printed as PyTorch's NonDynamicallyQuantizableLinear (MultiheadAttention's out_proj). */
AG_HIDDEN ag_module *ag__nn_out_proj_linear(int64_t in_features, int64_t out_features, bool bias);

/* MultiheadAttention's forward (nn/attention.c): *out (and *weights when weights is not NULL
 * and o->need_weights) in the caller's scope; o NULL for AG_MHA_DEFAULTS.  NULL key is query,
 * NULL value is key.  TransformerEncoderLayer calls it directly. */
AG_HIDDEN ag_status ag__mha_forward(ag_module *m, ag_tensor *query, ag_tensor *key, ag_tensor *value,
                                    ag_tensor *key_padding_mask, ag_tensor *attn_mask, const ag_mha_opts *o,
                                    ag_tensor **out, ag_tensor **weights);
/* [L, S] causal mask: key j > query i masked (bool: true; float dtype: -inf, else 0). */
AG_HIDDEN ag_tensor *ag__causal_mask(int64_t L, int64_t S, ag_dtype dtype);

#endif

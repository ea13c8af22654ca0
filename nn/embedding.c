/*
 * embedding.c - nn.Embedding: a lookup table of num_embeddings rows of
 * embedding_dim floats over ag_embedding, with PyTorch's parameter name,
 * initialisation (N(0, 1), the padding row zeroed) and repr.
 */
#include <stdio.h>
#include <string.h>
#include "core/internal.h"
#include "agrad/nn.h"
#include "agrad/ops.h"

typedef struct embedding {
    int64_t num_embeddings, embedding_dim;
    int64_t padding_idx; /* resolved to [0, num_embeddings), or AG_NO_PADDING_IDX */
} embedding;

static ag_tensor *embedding_forward(ag_module *m, ag_tensor *indices) {
    const embedding *e = ag_module_data(m);
    return ag_embedding(ag_module_get_parameter(m, "weight"), indices, e->padding_idx);
}

/* PyTorch's Embedding.extra_repr: "num_embeddings, embedding_dim" and padding_idx when set. */
static void embedding_describe(const ag_module *m, char *buf, size_t size) {
    const embedding *e = ag_module_data(m);
    int len = snprintf(buf, size, "%lld, %lld", (long long)e->num_embeddings, (long long)e->embedding_dim);
    if (e->padding_idx != AG_NO_PADDING_IDX && len >= 0 && (size_t)len < size)
        snprintf(buf + len, size - (size_t)len, ", padding_idx=%lld", (long long)e->padding_idx);
}

static const ag_module_type embedding_type = {"Embedding", embedding_forward, embedding_describe, NULL};

ag_module *ag_nn_embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx) {
    if (num_embeddings < 0 || embedding_dim < 0)
        return ag__fail_null(AG_ERR_ARG, "nn.Embedding: num_embeddings=%lld and embedding_dim=%lld must not be negative",
                             (long long)num_embeddings, (long long)embedding_dim);
    if (padding_idx != AG_NO_PADDING_IDX && (padding_idx < -num_embeddings || padding_idx >= num_embeddings))
        return ag__fail_null(AG_ERR_INDEX, "nn.Embedding: padding_idx %lld must be within num_embeddings %lld (or -%lld..-1)",
                             (long long)padding_idx, (long long)num_embeddings, (long long)num_embeddings);
    const int64_t shape[2] = {num_embeddings, embedding_dim};
    if (ag__numel_checked(2, shape) < 0)
        return ag__fail_null(AG_ERR_ARG, "nn.Embedding: a weight of %lld x %lld is too large", (long long)num_embeddings,
                             (long long)embedding_dim);
    embedding *e = ag__alloc(sizeof *e);
    if (!e) return NULL;
    *e = (embedding){num_embeddings, embedding_dim,
                     padding_idx < 0 && padding_idx != AG_NO_PADDING_IDX ? padding_idx + num_embeddings : padding_idx};
    ag_module *m = ag_module_new(&embedding_type, e);
    if (!m || ag_scope_begin()) {
        ag_module_free(m);
        return NULL;
    }
    /* PyTorch's reset_parameters: normal_(weight), then the padding row filled with 0 */
    ag_tensor *w = ag_normal_(ag_empty((ag_shape){2, {num_embeddings, embedding_dim}}, AG_F32), 0, 1);
    if (w && e->padding_idx != AG_NO_PADDING_IDX && embedding_dim > 0)
        memset((float *)ag_data(w) + e->padding_idx * embedding_dim, 0, sizeof(float) * (size_t)embedding_dim);
    ag_status st = w ? ag_module_register_parameter(m, "weight", w) : ag_last_status();
    ag_scope_end();
    if (st) {
        ag_module_free(m);
        return NULL;
    }
    return m;
}

/*
 * rnn_utils.c - torch.nn.utils.rnn.pad_sequence: a list of sequences of
 * different lengths as one padded batch, the input ag_rnn_forward takes with
 * their lengths.
 */
#include "core/internal.h"
#include "agrad/nn.h"
#include "agrad/ops.h"

/* y[t, b] = seqs[b][t] for t < len(seqs[b]), padding_value after (batch-first: y[b, t]) */
ag_tensor *ag_pad_sequence(ag_tensor *const *seqs, int n, bool batch_first, double padding_value) {
    if (!seqs || n < 1) return ag__fail_null(AG_ERR_ARG, "pad_sequence: needs at least one sequence (got %d)", n);
    AG_CHECK_HANDLE_ARRAY(NULL, "pad_sequence", seqs, n);
    int64_t longest = 0;
    for (int i = 0; i < n; i++) {
        if (!seqs[i]) return NULL;
        if (ag_ndim(seqs[i]) < 1)
            return ag__fail_null(AG_ERR_SHAPE, "pad_sequence: sequence %d is 0-d; each needs a time dim first", i);
        if (ag_size(seqs[i], 0) > longest) longest = ag_size(seqs[i], 0);
    }
    if (ag__composite_begin("pad_sequence")) return NULL;
    ag_tensor **padded = ag__alloc_n(n, sizeof *padded);
    ag_tensor *y = NULL;
    int i = 0;
    for (; padded && i < n; i++) {
        ag_shape tail = ag_shape_of(seqs[i]);
        tail.dim[0] = longest - tail.dim[0];
        padded[i] = tail.dim[0] == 0 ? seqs[i]
                                     : ag_cat((ag_tensor *[]){seqs[i], ag_full(tail, padding_value, ag_dtype_of(seqs[i]))}, 2, 0);
        if (!padded[i]) break;
    }
    if (padded && i == n) y = ag_stack(padded, n, batch_first ? 0 : 1);
    ag__free(padded);
    return ag__composite_end(y);
}

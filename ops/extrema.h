/*
 * extrema.h - the adjoints that selecting ops share: of one value of a whole
 * tensor (max, min in ops/extrema.c; median in ops/sort.c), and, in differentiable
 * ops, of values picked along a dim at saved indices (max_dim, min_dim; sort, topk,
 * kthvalue, median_dim in ops/sort.c; cummax, cummin in ops/scan.c).  Private.
 */
#ifndef AGRAD_OPS_EXTREMA_H
#define AGRAD_OPS_EXTREMA_H

#include "core/internal.h"
#include "agrad/ops.h"

/* The adjoint of a 0-d out selected from all of in[0] (saves IN0 and OUT): dy split evenly
 * over the elements equal to out (the NaNs when out is NaN), 0 elsewhere, as PyTorch's
 * evenly_distribute_backward. */
AG_HIDDEN ag_status ag__tie_split_backward(ag_tensor *out, ag_tensor *gout);
/* The same in differentiable ops (create_graph): gin[0] = dy·[x = y] / #{x = y}. */
AG_HIDDEN ag_status ag__tie_split_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);

/* The adjoint, in differentiable ops, of values picked from x = out->in[0] along dim attr.i[0] at
 * the int64 indices out->saved (of out's shape, dim d dropped where out dropped it): dx = 0 with dy
 * added at the indices, scatter_add(0, d, idx, dy) (an index picked twice, as cummax's, gets the sum).
 * Inline, so that a family using it depends on scatter_add only. */
static inline ag_status ag__pick_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0], *idx = out->saved;
    const int d = (int)out->attr.i[0];
    if (x->ndim == 0) return (gin[0] = ag_reshape(gout, ag_shape_of(x))) ? AG_OK : ag_last_status();
    const bool dropped = out->ndim < x->ndim;
    ag_tensor *i = dropped ? ag_unsqueeze(idx, d) : idx, *g = dropped ? ag_unsqueeze(gout, d) : gout;
    return i && (gin[0] = ag_scatter_add(ag_zeros_like(x), d, i, g)) ? AG_OK : ag_last_status();
}

#endif

/*
 * nn/flatten.c - flat parameter and gradient buffers, and PyTorch's
 * parameters_to_vector / vector_to_parameters.
 *
 * ag_flatten_parameters moves the data of a list of parameters into one
 * contiguous buffer P and their gradients into views of a second buffer G of the
 * same layout, so that a data-parallel all-reduce, a broadcast of the weights or
 * a fused update is one call on one tensor.
 *
 * How a parameter comes to live in P without changing its handle: its storage
 * keeps its header (and its host block, so frees stay sized right) but its data
 * pointer moves into P and it takes a reference on P's storage (`base`); version
 * reads and bumps go to P's counter (ag__version_counter), as views share their
 * base's counter in PyTorch.  Views of a parameter share its storage header, so
 * they follow the data into P too.  Its .grad becomes a view into G and the tensor is
 * marked grad_pinned, which makes backward add into that view in place and
 * zero_grad zero it instead of dropping it.
 */
#include <string.h>

#include "core/internal.h"
#include "core/iter.h"
#include "agrad/autograd.h"
#include "agrad/nn.h"
#include "agrad/ops.h"

/* Why params[i] cannot be flattened, or NULL when it can.  dtype is the first
 * parameter's. */
static const char *unfit(const ag_tensor *p, ag_dtype dtype) {
    if (p->op) return "is not a leaf";
    if (p->dtype != dtype) return "has a different dtype";
    if (!ag__contig(p) || p->offset != 0 || p->storage->nbytes != (size_t)ag_numel(p) * ag__esize(p->dtype))
        return "does not own its whole storage contiguously";
    if (p->storage->base) return "is flattened already";
    if (p->grad && (!ag__contig(p->grad) || p->grad->ndim != p->ndim)) return "has a gradient of another layout";
    return NULL;
}

ag_status ag_flatten_parameters(ag_tensor *const *params, int n, ag_tensor **flat_params, ag_tensor **flat_grads) {
    if (flat_params) *flat_params = NULL;
    if (flat_grads) *flat_grads = NULL;
    if (!params || n < 1) return ag__fail(AG_ERR_ARG, "flatten_parameters: no parameters (n = %d)", n);
    for (int i = 0; i < n; i++)
        if (!params[i]) return ag__fail(AG_ERR_ARG, "flatten_parameters: parameter %d is NULL", i);
    AG_CHECK_HANDLE_ARRAY(ag_last_status(), "flatten_parameters", params, n);
    ag_dtype dtype = params[0]->dtype;
    if (dtype != AG_F32 && dtype != AG_F64)
        return ag__fail(AG_ERR_DTYPE, "flatten_parameters: parameters must be float32 or float64, got %s", ag_dtype_name(dtype));
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        const char *why = unfit(params[i], dtype);
        if (why) {
            char s[AG_SHAPE_STR];
            return ag__fail(params[i]->dtype != dtype ? AG_ERR_DTYPE : AG_ERR_ARG,
                            "flatten_parameters: parameter %d (%s %s) %s", i, ag_dtype_name(params[i]->dtype),
                            ag__tshape(s, params[i]), why);
        }
        for (int j = 0; j < i; j++)
            if (params[j]->storage == params[i]->storage)
                return ag__fail(AG_ERR_ARG, "flatten_parameters: parameters %d and %d share their data (listed twice?)", j, i);
        total += ag_numel(params[i]);
    }

    /* Everything that can fail comes first; the new tensors go to the caller's scope. */
    ag_tensor *fp = ag__own(ag__new_unowned(dtype, 1, &total, false));
    ag_tensor *fg = ag__own(ag__new_unowned(dtype, 1, &total, true));
    ag_tensor **gviews = ag__cache_alloc(sizeof(ag_tensor *) * (size_t)n);
    bool ok = fp && fg && gviews;
    if (gviews) memset(gviews, 0, sizeof(ag_tensor *) * (size_t)n);
    for (int64_t i = 0, off = 0; ok && i < n; off += ag_numel(params[i]), i++) {
        if (!params[i]->requires_grad) continue;
        gviews[i] = ag__new_view_unowned(fg, params[i]->ndim, params[i]->shape, params[i]->stride, off);
        ok = gviews[i] != NULL;
    }
    if (!ok) {
        for (int i = 0; gviews && i < n; i++) ag_release(gviews[i]);
        ag__cache_free(gviews, sizeof(ag_tensor *) * (size_t)n);
        ag__discard(fp);
        ag__discard(fg);
        return ag__fail(AG_ERR_NOMEM, "flatten_parameters: out of memory for %lld elements", (long long)total);
    }

    /* Commit: nothing below can fail. */
    size_t esize = ag__esize(dtype);
    for (int64_t i = 0, off = 0; i < n; off += ag_numel(params[i]), i++) {
        ag_tensor *p = params[i];
        char *dst = ag__ptr(fp) + off * (int64_t)esize;
        memcpy(dst, ag__ptr(p), (size_t)ag_numel(p) * esize);
        ag__storage_release(p->storage->spill); /* data converted by ag_module_to_dtype moves on */
        p->storage->spill = NULL;
        p->storage->data = dst;
        p->storage->base = fp->storage;
        ag__ref_take(&fp->storage->refcount);
        if (gviews[i]) {
            if (p->grad) ag__copy_into(gviews[i], p->grad);
            ag_release(p->grad);
            p->grad = gviews[i];
            ag__mark_grad_held(p->grad);
            p->grad_pinned = true;
        }
    }
    ag__cache_free(gviews, sizeof(ag_tensor *) * (size_t)n);
    if (flat_params) *flat_params = fp;
    else ag__discard(fp);
    if (flat_grads) *flat_grads = fg;
    else ag__discard(fg);
    return AG_OK;
}

ag_tensor *ag_parameters_to_vector(ag_tensor *const *params, int n) {
    if (!params || n < 1) return ag__fail_null(AG_ERR_ARG, "parameters_to_vector: no parameters (n = %d)", n);
    AG_CHECK_HANDLE_ARRAY(NULL, "parameters_to_vector", params, n);
    ag_tensor **flat = ag__cache_alloc(sizeof(ag_tensor *) * (size_t)n);
    if (!flat) return ag__fail_null(AG_ERR_NOMEM, "parameters_to_vector: out of memory");
    ag_tensor *v = NULL;
    if (ag__composite_begin("parameters_to_vector") == AG_OK) {
        for (int i = 0; i < n; i++) flat[i] = ag_reshape(params[i], AG_SHAPE(-1));
        v = ag__composite_end(ag_cat(flat, n, 0));
    }
    ag__cache_free(flat, sizeof(ag_tensor *) * (size_t)n);
    return v;
}

ag_status ag_vector_to_parameters(const ag_tensor *vec, ag_tensor *const *params, int n) {
    if (!vec || !params) return ag__fail(AG_ERR_ARG, "vector_to_parameters: NULL argument");
    AG_CHECK_HANDLES(ag_last_status(), "vector_to_parameters", vec);
    AG_CHECK_HANDLE_ARRAY(ag_last_status(), "vector_to_parameters", params, n);
    char s[AG_SHAPE_STR];
    if (vec->ndim != 1) return ag__fail(AG_ERR_SHAPE, "vector_to_parameters: expected a 1-D vector, got %s", ag__tshape(s, vec));
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (!params[i]) return ag__fail(AG_ERR_ARG, "vector_to_parameters: parameter %d is NULL", i);
        for (int j = 0; j < i; j++)
            if (params[j]->storage == params[i]->storage)
                return ag__fail(AG_ERR_ARG, "flatten_parameters: parameters %d and %d share their data (listed twice?)", j, i);
        if (ag__add_overflow(total, ag_numel(params[i]), &total)) total = INT64_MAX; /* saturates: expanded views */
    }
    if (total != vec->shape[0])
        return ag__fail(AG_ERR_SHAPE, "vector_to_parameters: the vector has %lld elements, the %d parameters %lld",
                        (long long)vec->shape[0], n, (long long)total);
    ag_status st = ag_scope_begin();
    if (st != AG_OK) return st;
    ag_no_grad_begin();
    for (int64_t i = 0, off = 0; st == AG_OK && i < n; off += ag_numel(params[i]), i++) {
        ag_tensor *slice = ag_narrow((ag_tensor *)vec, 0, off, ag_numel(params[i]));
        ag_tensor *shaped = ag_reshape(slice, ag_shape_of(params[i]));
        st = shaped ? ag_copy_(params[i], shaped) ? AG_OK : ag_last_status() : ag_last_status();
    }
    ag_scope_end();
    ag_no_grad_end();
    return st;
}

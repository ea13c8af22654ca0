/*
 * parametrize.c - torch.nn.utils.weight_norm and spectral_norm: a module's
 * weight re-expressed through other parameters and recomputed by a forward
 * pre-hook before every forward, so that the optimizer trains those instead.
 *
 * weight_norm (Salimans & Kingma, 2016): weight = g · v/‖v‖, the norm taken over
 * every dim but `dim` (or the whole tensor), with parameters name_g and name_v.
 * spectral_norm (Miyato et al., 2018): weight = weight_orig / σ with σ the
 * largest singular value of weight_orig seen as a matrix [size(dim), rest],
 * estimated by power iteration on the buffers name_u and name_v (one or more
 * iterations per training forward, none in eval mode).
 *
 * The weight the module's forward reads is a computed tensor of the module
 * (nn/module.h): found under the old name but neither a parameter nor saved.
 */
#include <math.h>
#include <string.h>
#include "agrad/autograd.h"
#include "agrad/linalg.h"
#include "agrad/ops.h"
#include "agrad/tensor.h"
#include "nn/module.h"

typedef struct parametrization {
    char name[64];
    bool spectral;
    int dim;                /* weight_norm: -1 for the whole tensor; spectral_norm: the dim made rows */
    int n_power_iterations; /* spectral_norm */
    double eps;             /* spectral_norm */
    ag_hook_handle handle;
} parametrization;

static ag_tensor *member(const ag_module *m, const parametrization *p, const char *suffix, bool buffer) {
    char full[80];
    snprintf(full, sizeof full, "%s_%s", p->name, suffix);
    return buffer ? ag_module_get_buffer(m, full) : ag_module_get_parameter(m, full);
}

/* ‖v‖₂ over every dim but dim, kept as size-1 dims (PyTorch's norm_except_dim); the whole norm for dim −1. */
static ag_tensor *norm_except_dim(ag_tensor *v, int dim) {
    if (dim == -1) return ag_linalg_vector_norm(v, 2, 0, NULL, false);
    if (v->ndim == 1) return ag_abs(v);
    int dims[AG_MAX_DIMS], n = 0;
    for (int d = 0; d < v->ndim; d++)
        if (d != dim) dims[n++] = d;
    return ag_linalg_vector_norm(v, 2, n, dims, true);
}

/* weight = v · (g / ‖v‖) */
static ag_tensor *weight_norm_weight(const ag_module *m, const parametrization *p) {
    ag_tensor *v = member(m, p, "v", false);
    return ag_mul(v, ag_div(member(m, p, "g", false), norm_except_dim(v, p->dim)));
}

/* weight_orig with `dim` moved first, as a matrix [size(dim), rest]. */
static ag_tensor *as_matrix(ag_tensor *w, int dim) {
    if (dim != 0) w = ag_movedim(w, 1, &dim, (int[]){0});
    return ag_reshape(w, AG_SHAPE(ag_size(w, 0), -1));
}

/* x ← x / max(‖x‖, ε) */
static void normalize(double *x, int64_t n, double eps) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i] * x[i];
    double d = fmax(sqrt(s), eps);
    for (int64_t i = 0; i < n; i++) x[i] /= d;
}

/* n_power_iterations of v ← normalize(Wᵀu), u ← normalize(Wv) on the buffers, W = the weight matrix. */
static ag_status power_iteration(const ag_module *m, const parametrization *p, ag_tensor *W) {
    ag_tensor *ub = member(m, p, "u", true), *vb = member(m, p, "v", true);
    int64_t h = ag_size(W, 0), w = ag_size(W, 1);
    ag_tensor *Wd = ag_contiguous(ag_to_dtype(ag_detach(W), AG_F64));
    ag_tensor *u = ag_contiguous(ag_to_dtype(ub, AG_F64)), *v = ag_contiguous(ag_to_dtype(vb, AG_F64));
    if (!Wd || !u || !v) return ag_last_status();
    u = ag_clone(u), v = ag_clone(v);
    if (!u || !v) return ag_last_status();
    const double *A = ag_data(Wd);
    double *ud = ag_data(u), *vd = ag_data(v);
    for (int it = 0; it < p->n_power_iterations; it++) {
        for (int64_t j = 0; j < w; j++) {
            double s = 0;
            for (int64_t i = 0; i < h; i++) s += A[i * w + j] * ud[i];
            vd[j] = s;
        }
        normalize(vd, w, p->eps);
        for (int64_t i = 0; i < h; i++) {
            double s = 0;
            for (int64_t j = 0; j < w; j++) s += A[i * w + j] * vd[j];
            ud[i] = s;
        }
        normalize(ud, h, p->eps);
    }
    return ag_copy_(ub, u) && ag_copy_(vb, v) ? AG_OK : ag_last_status();
}

/* weight = weight_orig / σ, σ = uᵀ·W·v (after the power iteration when training) */
static ag_tensor *spectral_weight(const ag_module *m, const parametrization *p, bool iterate) {
    ag_tensor *orig = member(m, p, "orig", false), *W = as_matrix(orig, p->dim);
    if (!W) return NULL;
    if (iterate && p->n_power_iterations > 0) {
        ag_no_grad_begin();
        ag_status st = power_iteration(m, p, W);
        ag_no_grad_end();
        if (st) return NULL;
    }
    ag_tensor *u = ag_clone(member(m, p, "u", true)), *v = ag_clone(member(m, p, "v", true));
    ag_tensor *sigma = ag_sum(ag_mul(u, ag_matmul(W, v)));
    return ag_div(orig, sigma);
}

static ag_tensor *compute(const ag_module *m, const parametrization *p) {
    return p->spectral ? spectral_weight(m, p, ag_module_is_training(m)) : weight_norm_weight(m, p);
}

/* Sets the module's computed weight to a fresh computation (graph and all). */
static ag_status refresh(ag_module *m, const parametrization *p) {
    if (ag_scope_begin()) return ag_last_status();
    ag_tensor *w = compute(m, p);
    ag_status st = w ? ag__module_set_computed(m, p->name, w) : ag_last_status() ? ag_last_status() : AG_ERR_ARG;
    ag_scope_end();
    return st;
}

static ag_status pre_hook(ag_module *m, ag_tensor *x, ag_tensor **replace, void *user) {
    (void)x, (void)replace;
    return refresh(m, user);
}

static bool same_name(const void *user, const void *key) { return strcmp(((const parametrization *)user)->name, key) == 0; }

static void free_parametrization(void *p) { ag__free(p); }

/* Registers p's parameters and buffers in place of the parameter p->name (whose tensor
 * is `weight`, taken from m), adds the hook and computes the weight once.  Frees p on failure. */
static ag_status install(const char *op, ag_module *m, parametrization *p, ag_tensor *weight) {
    char a[80], b[80], c[80];
    ag_status st = ag_scope_begin();
    if (st == AG_OK && !p->spectral) { /* name_g = ‖weight‖ over the other dims; name_v = the weight itself */
        snprintf(a, sizeof a, "%s_g", p->name);
        snprintf(b, sizeof b, "%s_v", p->name);
        ag_no_grad_begin();
        ag_tensor *g = ag_contiguous(ag_clone(norm_except_dim(weight, p->dim)));
        ag_no_grad_end();
        st = g ? ag_module_register_parameter(m, a, g) : ag_last_status();
        if (!st) st = ag_module_register_parameter(m, b, weight);
    } else if (st == AG_OK) { /* name_orig = the weight; buffers u, v = normalised N(0, 1) vectors */
        snprintf(a, sizeof a, "%s_orig", p->name);
        snprintf(b, sizeof b, "%s_u", p->name);
        snprintf(c, sizeof c, "%s_v", p->name);
        int64_t h = ag_size(weight, p->dim), w = h ? ag_numel(weight) / h : 0;
        ag_no_grad_begin();
        ag_tensor *uv[2] = {ag_randn(AG_SHAPE(h), ag_dtype_of(weight)), ag_randn(AG_SHAPE(w), ag_dtype_of(weight))};
        for (int k = 0; !st && k < 2; k++)
            if (!uv[k] || !ag_div_(uv[k], ag_clamp(ag_linalg_vector_norm(uv[k], 2, 0, NULL, false), p->eps, INFINITY)))
                st = ag_last_status();
        ag_no_grad_end();
        if (!st) st = ag_module_register_parameter(m, a, weight);
        if (!st) st = ag_module_register_buffer(m, b, uv[0]);
        if (!st) st = ag_module_register_buffer(m, c, uv[1]);
    }
    ag_scope_end();
    if (!st) st = ag__module_add_pre_hook(op, m, pre_hook, p, free_parametrization, &p->handle);
    else ag__free(p);
    if (!st) st = p->spectral ? ag__module_set_computed(m, p->name, weight) : refresh(m, p);
    return st;
}

static ag_status start(const char *op, ag_module *m, const char *name, int dim, bool whole_ok, ag_tensor **weight) {
    if (!m || !name) return ag__fail(AG_ERR_ARG, "%s: module or name is NULL", op);
    if (strlen(name) > 50) return ag__fail(AG_ERR_ARG, "%s: the name \"%.50s...\" is too long", op, name);
    if (ag__module_find_pre_hook(m, pre_hook, same_name, name))
        return ag__fail(AG_ERR_ARG, "%s: %s's \"%s\" already has a weight_norm or spectral_norm", op,
                        ag_module_type_name(m), name);
    if (!ag__module_is_parameter(m, name))
        return ag__fail(AG_ERR_ARG, "%s: %s has no parameter \"%s\"", op, ag_module_type_name(m), name);
    ag_tensor *w = ag_module_get_parameter(m, name);
    if (!(dim >= 0 && dim < w->ndim) && !(whole_ok && dim == -1))
        return ag__fail(AG_ERR_ARG, "%s: dim %d out of range for \"%s\" of %d dims%s", op, dim, name, w->ndim,
                        whole_ok ? " (-1: the whole tensor)" : "");
    *weight = ag__module_take_tensor(m, name);
    return AG_OK;
}

ag_status ag_weight_norm(ag_module *m, const char *name, int dim) {
    ag_tensor *w = NULL;
    ag_status st = start("weight_norm", m, name, dim, true, &w);
    if (st) return st;
    parametrization *p = ag__calloc(sizeof *p);
    if (!p) st = AG_ERR_NOMEM;
    else {
        snprintf(p->name, sizeof p->name, "%s", name);
        p->dim = dim;
        st = install("weight_norm", m, p, w);
    }
    ag_release(w);
    return st;
}

ag_status ag_spectral_norm(ag_module *m, const char *name, int n_power_iterations, double eps, int dim) {
    if (n_power_iterations < 0 || !(eps > 0) || isinf(eps))
        return ag__fail(AG_ERR_ARG, "spectral_norm: expects n_power_iterations >= 0 and a finite eps > 0, got %d, %g",
                        n_power_iterations, eps);
    if (dim == -1 && m) { /* PyTorch's None: 1 for transposed convolutions, whose weights are [in, out, ...] */
        const char *t = ag_module_type_name(m);
        dim = t && strncmp(t, "ConvTranspose", 13) == 0 ? 1 : 0;
    }
    ag_tensor *w = NULL;
    ag_status st = start("spectral_norm", m, name, dim, false, &w);
    if (st) return st;
    parametrization *p = ag__calloc(sizeof *p);
    if (!p) st = AG_ERR_NOMEM;
    else {
        *p = (parametrization){.spectral = true, .dim = dim, .n_power_iterations = n_power_iterations, .eps = eps};
        snprintf(p->name, sizeof p->name, "%s", name);
        st = install("spectral_norm", m, p, w);
    }
    ag_release(w);
    return st;
}

/* Replaces the parametrisation by a plain parameter holding the weight it gives now. */
static ag_status remove_parametrization(const char *op, ag_module *m, const char *name, bool spectral) {
    if (!m || !name) return ag__fail(AG_ERR_ARG, "%s: module or name is NULL", op);
    parametrization *p = ag__module_find_pre_hook(m, pre_hook, same_name, name);
    if (!p || p->spectral != spectral)
        return ag__fail(AG_ERR_ARG, "%s: %s's \"%s\" has no %s", op, ag_module_type_name(m), name,
                        spectral ? "spectral_norm" : "weight_norm");
    if (ag_scope_begin()) return ag_last_status();
    ag_no_grad_begin();
    ag_tensor *w = ag_contiguous(ag_clone(p->spectral ? spectral_weight(m, p, false) : weight_norm_weight(m, p)));
    ag_no_grad_end();
    if (!w) {
        ag_scope_end();
        return ag_last_status();
    }
    static const char *const parts[2][3] = {{"g", "v", NULL}, {"orig", "u", "v"}};
    for (int k = 0; k < 3 && parts[spectral][k]; k++) {
        char full[80];
        snprintf(full, sizeof full, "%s_%s", name, parts[spectral][k]);
        ag_release(ag__module_take_tensor(m, full));
    }
    ag_release(ag__module_take_tensor(m, name));
    ag_hook_remove(p->handle); /* frees p */
    ag_status st = ag_module_register_parameter(m, name, w);
    ag_scope_end();
    return st;
}

ag_status ag_remove_weight_norm(ag_module *m, const char *name) {
    return remove_parametrization("remove_weight_norm", m, name, false);
}

ag_status ag_remove_spectral_norm(ag_module *m, const char *name) {
    return remove_parametrization("remove_spectral_norm", m, name, true);
}

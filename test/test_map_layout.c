/*
 * The layout of element-wise results (core/layout.c, PyTorch's preserve_format): a unary, binary or
 * ternary map (lerp, clamp_tensor), where, a comparison or isnan/isinf/isfinite, clone or to_dtype, flip, of
 * inputs that are dense in one permuted layout writes its result in that layout (the strides
 * PyTorch 1.13 gives, checked with torch's .stride()), any other mix of inputs a row-major result; the
 * values are the bits of the row-major path's (the map over contiguous copies), forward and backward, on
 * one thread and two; gradients and ag_contiguous stay row-major.  index_fill and put clone x in its
 * layout (session 19).  The fused loss terms of ops/loss.c
 * (huber, bce, bce_with_logits, poisson_nll, kl_div) follow the same rule.
 */
#include <math.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "strided_copy.h"
#include "tap.h"

/* Whether t's strides (elements) are s[0..ndim). */
static bool strides_are(const ag_tensor *t, int ndim, const int64_t *s) {
    if (!t || t->ndim != ndim) return false;
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] > 1 && t->stride[d] != s[d]) return false;
    return true;
}
#define STRIDES(t, ...) strides_are(t, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

/* The strides torch 1.13 gives for the same calls (N = 4 there; here 150 x 70 and the like). */
static void strides_cases(ag_dtype dt) {
    ag_tensor *a = ag_t(ag_randn(AG_SHAPE(70, 150), dt)), *b = ag_t(ag_randn(AG_SHAPE(70, 150), dt)); /* [150, 70] */
    ag_tensor *c = ag_randn(AG_SHAPE(150, 70), dt), *v = ag_randn(AG_SHAPE(70), dt), *col = ag_randn(AG_SHAPE(150, 1), dt);
    ok(STRIDES(ag_abs(a), 1, 150), "abs of a transposed [150, 70]: transposed strides (1, 150), as torch");
    ok(STRIDES(ag_mul_scalar(a, 2), 1, 150), "mul_scalar of a transposed input: transposed, as torch");
    ok(STRIDES(ag_add(a, b), 1, 150), "add of two transposed: transposed, as torch");
    ok(STRIDES(ag_add(a, v), 1, 150), "a transposed plus a broadcast [70]: transposed, as torch");
    ok(STRIDES(ag_add(col, a), 1, 150), "a broadcast [150, 1] plus a transposed: transposed, as torch");
    ok(STRIDES(ag_add(c, a), 70, 1), "row-major plus transposed: row-major, as torch");
    ok(STRIDES(ag_add(a, c), 70, 1), "transposed plus row-major: row-major (torch follows the first: (1, 150))");
    ok(STRIDES(ag_clone(a), 1, 150), "clone of a transposed input: transposed, as torch");
    ok(STRIDES(ag_contiguous(a), 70, 1) && ag_is_contiguous(ag_contiguous(a)), "contiguous of a transposed input: row-major");
    ok(STRIDES(ag_to_dtype(a, dt == AG_F32 ? AG_F64 : AG_F32), 1, 150), "to_dtype of a transposed input: transposed, as torch");
    ok(STRIDES(ag_abs(ag_slice(a, 1, 0, 70, 2)), 35, 1), "abs of a transposed input with a step (not dense): row-major");
    ok(STRIDES(ag_abs(ag_flip(c, 1, (int[]){1})), 70, 1), "abs of a flip: row-major, as torch");
    ok(STRIDES(ag_abs(c), 70, 1), "abs of a row-major input: row-major");
    ag_tensor *p = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1}); /* [50, 20, 30] */
    ag_tensor *q = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1});
    ag_tensor *r = ag_permute(ag_randn(AG_SHAPE(50, 30, 20), dt), (int[]){0, 2, 1});
    ok(STRIDES(ag_neg(p), 1, 1500, 50), "neg of a permuted [50, 20, 30]: (1, 1500, 50), as torch");
    ok(STRIDES(ag_mul(p, q), 1, 1500, 50), "mul of two alike permuted: permuted, as torch");
    ok(STRIDES(ag_mul(p, r), 600, 30, 1), "mul of two permuted differently: row-major (torch follows the first)");
    ag_tensor *u = ag_permute(ag_randn(AG_SHAPE(3, 1, 5), dt), (int[]){2, 1, 0}); /* [5, 1, 3], a dim of one */
    ok(STRIDES(ag_relu(u), 1, 0, 5) && same_bits(ag_relu(u), ag_relu(plain(u))), "relu of a permuted [5, 1, 3]: (1, ., 5)");
    ag_tensor *e = ag_t(ag_randn(AG_SHAPE(0, 4), dt));
    ag_tensor *ea = ag_abs(e), *ez = ag_zeros(AG_SHAPE(4, 0), dt);
    ok(ea && ag_numel(ea) == 0 && ea->stride[0] == ez->stride[0] && ea->stride[1] == ez->stride[1],
       "abs of an empty transposed [4, 0]: a new tensor's strides (row-major)");
}

/* The strides torch 1.13 gives (N = 4 there) for the ops session 18 brought under the rule: comparisons,
 * tests, where, the ternary maps, to_dtype. */
static void strides_more(ag_dtype dt) {
    ag_tensor *a = ag_t(ag_randn(AG_SHAPE(70, 150), dt)), *b = ag_t(ag_randn(AG_SHAPE(70, 150), dt)); /* [150, 70] */
    ag_tensor *w = ag_t(ag_rand(AG_SHAPE(70, 150), dt)), *c = ag_randn(AG_SHAPE(150, 70), dt);
    ag_tensor *v = ag_randn(AG_SHAPE(70), dt), *col = ag_randn(AG_SHAPE(150, 1), dt);
    ag_tensor *m = ag_gt(a, b), *mr = ag_gt(c, ag_scalar(0, dt));
    ok(STRIDES(m, 1, 150) && STRIDES(ag_eq(a, b), 1, 150), "gt, eq of two transposed: transposed, as torch");
    ok(STRIDES(ag_isnan(a), 1, 150) && STRIDES(ag_isfinite(a), 1, 150), "isnan, isfinite of a transposed input: transposed, as torch");
    ok(STRIDES(ag_ge(a, v), 1, 150) && STRIDES(ag_ge(col, a), 1, 150), "ge of a transposed and a broadcast [70] or [150, 1]: transposed, as torch");
    ok(STRIDES(ag_eq(c, a), 70, 1), "eq of a row-major and a transposed: row-major, as torch");
    ok(STRIDES(ag_eq(a, c), 70, 1), "eq of a transposed and a row-major: row-major (torch follows the first: (1, 150))");
    ok(STRIDES(ag_where(m, a, b), 1, 150), "where of a transposed mask and two transposed: transposed, as torch");
    ag_tensor *fi = ag_from_data((int64_t[]){3, 0, -1}, AG_SHAPE(3), AG_I64);
    ok(STRIDES(ag_index_fill(a, 1, fi, 2), 1, 150) && STRIDES(ag_index_fill(a, 0, fi, 2), 1, 150) &&
       STRIDES(ag_index_fill(c, 1, fi, 2), 70, 1) &&
       same_bits(ag_index_fill(a, 1, fi, 2), ag_index_fill(plain(a), 1, fi, 2)) &&
       same_bits(ag_index_fill(a, 0, fi, -1), ag_index_fill(plain(a), 0, fi, -1)),
       "index_fill of a transposed: transposed (x cloned in its layout, as torch), the row-major's values; row-major of a row-major");
    ok(STRIDES(ag_where(m, a, v), 1, 150), "where of a transposed mask, a transposed and a broadcast [70]: transposed, as torch");
    ok(STRIDES(ag_where(mr, a, b), 70, 1), "where of a row-major mask and two transposed: row-major, as torch");
    ok(STRIDES(ag_lerp(a, b, w), 1, 150) && STRIDES(ag_lerp(a, b, ag_scalar(0.3, dt)), 1, 150),
       "lerp of three transposed, or two and a 0-d weight: transposed, as torch");
    ok(STRIDES(ag_lerp(c, a, b), 70, 1), "lerp of a row-major and two transposed: row-major, as torch");
    ok(STRIDES(ag_clamp_tensor(a, b, w), 1, 150) && STRIDES(ag_clamp_tensor(a, v, col), 1, 150),
       "clamp_tensor of three transposed, or of one and broadcast bounds: transposed, as torch");
    ok(STRIDES(ag_to_dtype(a, AG_I64), 1, 150) && STRIDES(ag_to_dtype(a, AG_BOOL), 1, 150),
       "to_dtype of a transposed input to int64, to bool: transposed, as torch");
    ag_tensor *p = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1}); /* [50, 20, 30] */
    ag_tensor *q = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1});
    ok(STRIDES(ag_eq(p, q), 1, 1500, 50) && STRIDES(ag_lerp(p, q, q), 1, 1500, 50) &&
           STRIDES(ag_to_dtype(p, dt == AG_F32 ? AG_F64 : AG_F32), 1, 1500, 50),
       "eq, lerp, to_dtype of permuted [50, 20, 30]: (1, 1500, 50), as torch");
    ag_tensor *s = ag_slice(a, 1, 0, 70, 2);
    ok(STRIDES(ag_eq(s, s), 35, 1) && STRIDES(ag_to_dtype(s, AG_I64), 35, 1),
       "eq, to_dtype of a transposed input with a step (not dense): row-major (torch keeps its order)");
}

/* The values of the ops of strides_more against the row-major path's, bit for bit (NaN, ±inf and ties
 * among the operands, so that every comparison and test meets them). */
static void value_more(ag_dtype dt, const char *dn) {
    ag_tensor *a0 = ag_randn(AG_SHAPE(70, 150), dt);
    const double special[3] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) /* at [k, 10 + k] of the row-major a0 */
        dt == AG_F32 ? (void)(((float *)ag_data(a0))[k * 151 + 10] = (float)special[k])
                     : (void)(((double *)ag_data(a0))[k * 151 + 10] = special[k]);
    ag_tensor *a = ag_t(a0), *b = ag_t(ag_randn(AG_SHAPE(70, 150), dt)), *w = ag_t(ag_rand(AG_SHAPE(70, 150), dt));
    ag_tensor *ac = plain(a), *bc = plain(b), *wc = plain(w), *v = ag_randn(AG_SHAPE(70), dt);
    ag_tensor *bt = ag_where(ag_lt(w, ag_scalar(0.3, dt)), a, b), *btc = plain(bt); /* ties with a */
    ok(same_bits(ag_eq(a, bt), ag_eq(ac, btc)) && same_bits(ag_ne(a, bt), ag_ne(ac, btc)) &&
           same_bits(ag_lt(a, bt), ag_lt(ac, btc)) && same_bits(ag_le(a, bt), ag_le(ac, btc)) &&
           same_bits(ag_gt(a, v), ag_gt(ac, v)) && same_bits(ag_ge(a, bt), ag_ge(ac, btc)),
       "%s eq, ne, lt, le, gt, ge of transposed inputs (NaN, inf, ties): the row-major bits", dn);
    ok(same_bits(ag_isnan(a), ag_isnan(ac)) && same_bits(ag_isinf(a), ag_isinf(ac)) && same_bits(ag_isfinite(a), ag_isfinite(ac)),
       "%s isnan, isinf, isfinite of a transposed input: the row-major bits", dn);
    ag_tensor *m = ag_gt(a, b), *mc = plain(m);
    ok(same_bits(ag_where(m, a, b), ag_where(mc, ac, bc)) && same_bits(ag_where(m, a, v), ag_where(mc, ac, v)),
       "%s where of transposed operands (and a broadcast [70]): the row-major bits", dn);
    ok(same_bits(ag_lerp(a, b, w), ag_lerp(ac, bc, wc)) && same_bits(ag_clamp_tensor(a, b, w), ag_clamp_tensor(ac, bc, wc)),
       "%s lerp, clamp_tensor of three transposed: the row-major bits", dn);
    const ag_dtype other = dt == AG_F32 ? AG_F64 : AG_F32;
    ok(same_bits(ag_to_dtype(a, other), ag_to_dtype(ac, other)) && same_bits(ag_to_dtype(a, AG_I64), ag_to_dtype(ac, AG_I64)) &&
           same_bits(ag_to_dtype(a, AG_BOOL), ag_to_dtype(ac, AG_BOOL)) && same_bits(ag_to_dtype(m, dt), ag_to_dtype(mc, dt)),
       "%s to_dtype of a transposed input (to the other float, int64, bool; a mask to %s): the row-major bits", dn, dn);
    /* a mask laid out as a transposed input feeds the masked ops as any view does */
    ok(same_bits(ag_masked_select(a, m), ag_masked_select(ac, mc)) && same_bits(ag_masked_fill(a, m, 2), ag_masked_fill(ac, mc, 2)),
       "%s masked_select, masked_fill with a transposed comparison's mask: the row-major bits", dn);
    ag_tensor *p = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1});
    ag_tensor *q = ag_permute(ag_rand(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1}), *pc = plain(p), *qc = plain(q);
    ok(same_bits(ag_lerp(p, q, q), ag_lerp(pc, qc, qc)) && same_bits(ag_le(p, q), ag_le(pc, qc)),
       "%s lerp, le of permuted [50, 20, 30]: the row-major bits", dn);
}

/* The gradients of the ops of strides_more: the row-major path's bits, .grad row-major. */
static void grad_more(ag_dtype dt, const char *dn) {
    ag_tensor *w = ag_randn(AG_SHAPE(150, 70), dt), *lw = ag_t(ag_rand(AG_SHAPE(70, 150), dt)), *lwc = plain(lw);
    ag_tensor *la = ag_requires_grad_(ag_randn(AG_SHAPE(70, 150), dt), true), *lb = ag_requires_grad_(ag_randn(AG_SHAPE(70, 150), dt), true);
    ag_tensor *ca = ag_requires_grad_(plain(ag_t(la)), true), *cb = ag_requires_grad_(plain(ag_t(lb)), true);
    ag_tensor *a = ag_t(la), *b = ag_t(lb);
    const ag_dtype other = dt == AG_F32 ? AG_F64 : AG_F32;
    ag_tensor *y = ag_add(ag_lerp(a, b, lw), ag_where(ag_gt(a, b), ag_clamp_tensor(a, b, lw), ag_mul_scalar(b, 3)));
    ag_tensor *yc = ag_add(ag_lerp(ca, cb, lwc), ag_where(ag_gt(ca, cb), ag_clamp_tensor(ca, cb, lwc), ag_mul_scalar(cb, 3)));
    ag_backward(ag_sum(ag_mul(ag_to_dtype(ag_mul(ag_to_dtype(y, other), ag_to_dtype(w, other)), dt), w)));
    ag_backward(ag_sum(ag_mul(ag_to_dtype(ag_mul(ag_to_dtype(yc, other), ag_to_dtype(w, other)), dt), w)));
    ok(STRIDES(y, 1, 150) && same_bits(y, yc), "%s lerp + where(gt, clamp_tensor, 3b) of transposed inputs: transposed, the row-major bits", dn);
    ok(same_bits(ag_grad(la), ag_t(ag_grad(ca))) && same_bits(ag_grad(lb), ag_t(ag_grad(cb))),
       "%s gradients through lerp, where, clamp_tensor and to_dtype of transposed inputs: the row-major bits", dn);
    ok(ag_is_contiguous(ag_grad(la)) && ag_is_contiguous(ag_grad(lb)), "%s the leaves' .grad are row-major", dn);
}

/* The values: every path's result against the row-major path's, bit for bit. */
static void value_cases(ag_dtype dt, const char *dn) {
    ag_tensor *a = ag_t(ag_randn(AG_SHAPE(70, 150), dt)), *b = ag_t(ag_randn(AG_SHAPE(70, 150), dt));
    ag_tensor *ac = plain(a), *bc = plain(b), *v = ag_randn(AG_SHAPE(70), dt);
    ok(same_bits(ag_abs(a), ag_abs(ac)) && same_bits(ag_relu(a), ag_relu(ac)) && same_bits(ag_neg(a), ag_neg(ac)),
       "%s abs, relu, neg of a transposed input: the row-major bits", dn);
    ok(same_bits(ag_exp(a), ag_exp(ac)) && same_bits(ag_tanh(a), ag_tanh(ac)) && same_bits(ag_gelu(a), ag_gelu(ac)),
       "%s exp, tanh, gelu (oneDNN for float32) of a transposed input: the row-major bits", dn);
    ag_tensor *pos = ag_abs(a);
    ok(same_bits(ag_sqrt(pos), ag_sqrt(plain(pos))), "%s sqrt of a transposed input: the row-major bits", dn);
    ok(same_bits(ag_add(a, b), ag_add(ac, bc)) && same_bits(ag_hypot(a, b), ag_hypot(ac, bc)),
       "%s add, hypot of two transposed: the row-major bits", dn);
    ok(same_bits(ag_sub(a, v), ag_sub(ac, v)) && same_bits(ag_fmod(a, b), ag_fmod(ac, bc)),
       "%s sub with a broadcast [70], fmod of two transposed: the row-major bits", dn);
    ok(same_bits(ag_clone(a), ac), "%s clone of a transposed input: its values", dn);
    ag_tensor *p = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1});
    ag_tensor *q = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1});
    ok(same_bits(ag_div(p, q), ag_div(plain(p), plain(q))), "%s div of two permuted [50, 20, 30]: the row-major bits", dn);
    /* a chain of maps keeps the layout: relu(2·a + b) */
    ag_tensor *y = ag_relu(ag_add(ag_mul_scalar(a, 2), b));
    ok(STRIDES(y, 1, 150) && same_bits(y, ag_relu(ag_add(ag_mul_scalar(ac, 2), bc))), "%s relu(2a + b), transposed: the row-major bits", dn);
    /* ag_data of a result is in memory order; of its ag_contiguous, row-major */
    ag_tensor *n = ag_neg(a);
    const size_t es = ag_dtype_size(dt);
    ok(memcmp(ag_data(ag_contiguous(n)), ag_data(ag_neg(ac)), 150 * 70 * es) == 0 &&
           memcmp(ag_data(n), ag_data(ag_neg(ag_contiguous(ag_t(a)))), 150 * 70 * es) == 0,
       "%s ag_data of neg(a) is in memory order (a's), of its ag_contiguous row-major", dn);
}

/* Gradients: the same bits, and row-major in .grad. */
static void grad_cases(ag_dtype dt, const char *dn) {
    ag_tensor *w = ag_randn(AG_SHAPE(150, 70), dt);
    ag_tensor *leaf = ag_requires_grad_(ag_randn(AG_SHAPE(70, 150), dt), true), *x = ag_t(leaf);
    ag_tensor *xc = ag_requires_grad_(plain(x), true), *lb = ag_requires_grad_(ag_randn(AG_SHAPE(70, 150), dt), true);
    ag_tensor *bc = ag_requires_grad_(plain(ag_t(lb)), true);
    ag_backward(ag_sum(ag_mul(ag_hypot(ag_gelu(x), ag_t(lb)), w)));
    ag_backward(ag_sum(ag_mul(ag_hypot(ag_gelu(xc), bc), w)));
    ok(same_bits(ag_grad(leaf), ag_t(ag_grad(xc))) && same_bits(ag_grad(lb), ag_t(ag_grad(bc))),
       "%s gradients through gelu and hypot of transposed inputs: the row-major bits", dn);
    ok(ag_is_contiguous(ag_grad(leaf)) && ag_is_contiguous(ag_grad(lb)), "%s the leaves' .grad are row-major", dn);
    ag_tensor *z = ag_requires_grad_(ag_randn(AG_SHAPE(70, 150), dt), true), *zc = ag_requires_grad_(plain(z), true);
    ag_tensor *t = ag_clone(ag_t(z)), *tc = ag_clone(ag_t(zc));
    ag_tensor *rs = ag_requires_grad_(ag_randn(AG_SHAPE(150, 70), dt), true), *rsc = ag_requires_grad_(plain(rs), true);
    ag_backward(ag_sum(ag_mul(ag_exp(ag_sub(t, rs)), w)));
    ag_backward(ag_sum(ag_mul(ag_exp(ag_sub(ag_contiguous(tc), rsc)), w)));
    ok(same_bits(ag_grad(z), ag_grad(zc)) && same_bits(ag_grad(rs), ag_grad(rsc)) && ag_is_contiguous(ag_grad(rs)),
       "%s gradients through clone, sub with a row-major input and exp: the row-major bits, .grad row-major", dn);
}

/* The fused loss terms of ops/loss.c (huber/smooth_l1, binary_cross_entropy, bce_with_logits with and
 * without pos_weight, poisson_nll_loss of log-rates and rates, kl_div and its log_target) of a
 * transposed input and target: laid out transposed, as torch 1.13's reduction "none" ((1, 5) at N = 4
 * for every one), with the row-major path's bits reduced or not, and their gradients too. */
typedef ag_tensor *(*loss_fn)(ag_tensor *, ag_tensor *, const ag_loss_opts *);
static void loss_cases(ag_dtype dt, const char *dn) {
    static const struct {
        const char *name;
        loss_fn f;
        bool prob, rate, log_target, pos_weight;
        double beta;
    } L[] = {
        {"huber_loss", ag_huber_loss, false, false, false, false, 1},
        {"smooth_l1_loss", ag_smooth_l1_loss, false, false, false, false, 0.7},
        {"binary_cross_entropy", ag_binary_cross_entropy, true, false, false, false, 1},
        {"binary_cross_entropy_with_logits", ag_binary_cross_entropy_with_logits, false, false, false, false, 1},
        {"binary_cross_entropy_with_logits pos_weight", ag_binary_cross_entropy_with_logits, false, false, false, true, 1},
        {"poisson_nll_loss", ag_poisson_nll_loss, false, false, false, false, 1},
        {"poisson_nll_loss rates", ag_poisson_nll_loss, false, true, false, false, 1},
        {"kl_div", ag_kl_div, true, false, false, false, 1},
        {"kl_div log_target", ag_kl_div, false, false, true, false, 1},
    };
    for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) {
        /* leaves [70, 150] seen transposed as [150, 70]; probabilities in (0, 1) where the loss wants them */
        ag_tensor *lx = ag_randn(AG_SHAPE(70, 150), dt), *lt = ag_randn(AG_SHAPE(70, 150), dt);
        if (L[k].prob || L[k].rate) lx = ag_add_scalar(ag_mul_scalar(ag_rand(AG_SHAPE(70, 150), dt), 0.98), 0.01);
        if (L[k].prob) lt = ag_rand(AG_SHAPE(70, 150), dt);
        ag_requires_grad_(lx, true);
        ag_requires_grad_(lt, true);
        ag_tensor *cx = ag_requires_grad_(plain(ag_t(lx)), true), *ct = ag_requires_grad_(plain(ag_t(lt)), true);
        ag_loss_opts o = ag_loss_defaults();
        o.beta = L[k].beta;
        o.log_target = L[k].log_target;
        o.log_input = !L[k].rate;
        if (L[k].pos_weight) o.pos_weight = ag_rand(AG_SHAPE(70), dt);
        o.reduction = AG_REDUCTION_NONE;
        ag_tensor *y = L[k].f(ag_t(lx), ag_t(lt), &o), *yc = L[k].f(cx, ct, &o);
        ok(STRIDES(y, 1, 150) && same_bits(y, yc), "%s %s of a transposed input and target: transposed, as torch, the row-major bits",
           dn, L[k].name);
        o.reduction = AG_REDUCTION_MEAN;
        ag_tensor *m = L[k].f(ag_t(lx), ag_t(lt), &o), *mc = L[k].f(cx, ct, &o);
        o.reduction = AG_REDUCTION_SUM;
        ok(same_bits(m, mc) && same_bits(L[k].f(ag_t(lx), ag_t(lt), &o), L[k].f(cx, ct, &o)),
           "%s %s mean and sum of a transposed input and target: the row-major bits", dn, L[k].name);
        ag_tensor *w = ag_randn(AG_SHAPE(150, 70), dt);
        ag_backward(ag_sum(ag_mul(y, w)));
        ag_backward(ag_sum(ag_mul(yc, w)));
        ok(same_bits(ag_grad(lx), ag_t(ag_grad(cx))) && same_bits(ag_grad(lt), ag_t(ag_grad(ct))) &&
               ag_is_contiguous(ag_grad(lx)) && ag_is_contiguous(ag_grad(lt)),
           "%s %s gradients of a transposed input and target: the row-major bits, .grad row-major", dn, L[k].name);
    }
}

/* flip keeps a dense input's layout as torch 1.13's (empty_like, preserve_format): the strides torch gives
 * (N = 4 there), the row-major path's bits forward and backward, .grad row-major. */
static void flip_cases(ag_dtype dt, const char *dn) {
    ag_tensor *a = ag_t(ag_randn(AG_SHAPE(70, 150), dt)), *ac = plain(a); /* [150, 70] */
    const int d0[] = {0}, d1[] = {1}, d01[] = {0, 1};
    ok(STRIDES(ag_flip(a, 1, d0), 1, 150) && STRIDES(ag_flip(a, 1, d1), 1, 150) && STRIDES(ag_flip(a, 2, d01), 1, 150),
       "%s flip of a transposed [150, 70] along 0, 1, both: transposed strides (1, 150), as torch", dn);
    ok(same_bits(ag_flip(a, 1, d0), ag_flip(ac, 1, d0)) && same_bits(ag_flip(a, 1, d1), ag_flip(ac, 1, d1)) &&
           same_bits(ag_flip(a, 2, d01), ag_flip(ac, 2, d01)) && same_bits(ag_flip(a, 0, NULL), ac),
       "%s flip of a transposed input along 0, 1, both, none: the row-major bits", dn);
    ag_tensor *p = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1}); /* [50, 20, 30] */
    ag_tensor *fp = ag_flip(p, 1, d1);
    ok(STRIDES(fp, 1, 1500, 50) && same_bits(fp, ag_flip(plain(p), 1, d1)),
       "%s flip of a permuted [50, 20, 30] along 1: (1, 1500, 50), as torch, the row-major bits", dn);
    ag_tensor *u = ag_permute(ag_randn(AG_SHAPE(3, 1, 5), dt), (int[]){2, 1, 0}); /* [5, 1, 3] */
    ok(STRIDES(ag_flip(u, 1, d0), 1, 0, 5) && same_bits(ag_flip(u, 2, d01), ag_flip(plain(u), 2, d01)),
       "%s flip of a permuted [5, 1, 3]: (1, ., 5), as torch, the row-major bits", dn);
    ag_tensor *c = ag_randn(AG_SHAPE(150, 70), dt), *s = ag_slice(a, 0, 0, 150, 2);
    ok(STRIDES(ag_flip(c, 1, d1), 70, 1), "%s flip of a row-major input: row-major, as torch", dn);
    ok(STRIDES(ag_flip(s, 1, d0), 70, 1) && same_bits(ag_flip(s, 1, d0), ag_flip(plain(s), 1, d0)),
       "%s flip of a transposed input with a step (not dense): row-major (torch keeps its order), the row-major bits", dn);
    ag_tensor *e = ag_flip(ag_t(ag_randn(AG_SHAPE(0, 4), dt)), 1, d0), *ez = ag_zeros(AG_SHAPE(4, 0), dt);
    ok(e && ag_numel(e) == 0 && e->stride[0] == ez->stride[0] && e->stride[1] == ez->stride[1],
       "%s flip of an empty transposed [4, 0]: a new tensor's strides (row-major)", dn);
    /* ag_data of the result is in memory order: a's rows reversed in order for a flip along 1 */
    ag_tensor *f1 = ag_flip(a, 1, d1), *rows = ag_flip(ag_t(a), 1, d0);
    ok(memcmp(ag_data(f1), ag_data(rows), 150 * 70 * ag_dtype_size(dt)) == 0 && same_bits(ag_contiguous(f1), ag_flip(ac, 1, d1)),
       "%s ag_data of flip(a, 1) is in memory order (a's rows reversed), its ag_contiguous row-major", dn);
    /* gradients: through flip of a transposed leaf view, a chain of maps after it, and create_graph */
    ag_tensor *w = ag_randn(AG_SHAPE(150, 70), dt);
    ag_tensor *leaf = ag_requires_grad_(ag_randn(AG_SHAPE(70, 150), dt), true), *lc = ag_requires_grad_(plain(ag_t(leaf)), true);
    ag_tensor *y = ag_exp(ag_flip(ag_t(leaf), 2, d01)), *yc = ag_exp(ag_flip(lc, 2, d01));
    ag_backward(ag_sum(ag_mul(ag_flip(y, 1, d1), w)));
    ag_backward(ag_sum(ag_mul(ag_flip(yc, 1, d1), w)));
    ok(STRIDES(y, 1, 150) && same_bits(y, yc), "%s exp(flip(a)) of a transposed a: transposed, the row-major bits", dn);
    ok(same_bits(ag_grad(leaf), ag_t(ag_grad(lc))) && ag_is_contiguous(ag_grad(leaf)),
       "%s the gradient through flip of a transposed input: the row-major bits, .grad row-major", dn);
}

/* put keeps a dense x's layout as torch 1.13's (x.clone().put_()); index_add gives a row-major result
 * there whatever x's layout (checked with torch's .stride()), and so here (index_copy: index_copy_cases).  put's flat positions
 * are row-major positions of the logical x: the values are the row-major path's bits, and the gradients. */
static void put_cases(ag_dtype dt, const char *dn) {
    /* torch: torch.arange(6.).reshape(2, 3).t().put(tensor([0, 5, -2, 5]), tensor([10., 20, 30, 40]),
     * accumulate=True) is [[10, 3], [1, 4], [32, 65]], strides (1, 3), storage 10 1 32 3 4 65 */
    ag_tensor *x6 = ag_t(ag_reshape(ag_arange(0, 6, 1, dt), AG_SHAPE(2, 3)));
    ag_tensor *i4 = ag_from_data((int64_t[]){0, 5, -2, 5}, AG_SHAPE(4), AG_I64);
    ag_tensor *s4 = ag_to_dtype(ag_from_data((double[]){10, 20, 30, 40}, AG_SHAPE(4), AG_F64), dt);
    ag_tensor *y6 = ag_put(x6, i4, s4, true);
    ag_tensor *want = ag_to_dtype(ag_from_data((double[]){10, 3, 1, 4, 32, 65}, AG_SHAPE(3, 2), AG_F64), dt);
    ag_tensor *mem = ag_to_dtype(ag_from_data((double[]){10, 1, 32, 3, 4, 65}, AG_SHAPE(6), AG_F64), dt);
    ok(STRIDES(y6, 1, 3) && same_bits(y6, want) && memcmp(ag_data(y6), ag_data(mem), 6 * ag_dtype_size(dt)) == 0,
       "%s put (accumulate) of a transposed [3, 2]: torch's strides (1, 3), values and memory order", dn);
    ag_tensor *a = ag_t(ag_randn(AG_SHAPE(70, 150), dt)), *ac = plain(a); /* [150, 70] */
    ag_tensor *c = ag_randn(AG_SHAPE(150, 70), dt), *src = ag_randn(AG_SHAPE(40), dt);
    int64_t iv[40];
    for (int k = 0; k < 40; k++) iv[k] = (k * 2741 + 5) % 10500 - (k % 3 == 0 ? 10500 : 0); /* negatives */
    iv[7] = iv[3], iv[20] = iv[3] + 10500; /* repeats, one as its negative */
    ag_tensor *idx = ag_from_data(iv, AG_SHAPE(40), AG_I64);
    ok(STRIDES(ag_put(a, idx, src, true), 1, 150) && STRIDES(ag_put(a, idx, src, false), 1, 150) &&
           same_bits(ag_put(a, idx, src, true), ag_put(ac, idx, src, true)) &&
           same_bits(ag_put(a, idx, src, false), ag_put(ac, idx, src, false)),
       "%s put of a transposed [150, 70] (repeats, negatives; accumulating or not): (1, 150), as torch, the row-major bits", dn);
    ok(STRIDES(ag_put(c, idx, src, true), 70, 1), "%s put of a row-major input: row-major, as torch", dn);
    ag_tensor *st = ag_slice(ag_t(ag_randn(AG_SHAPE(140, 150), dt)), 1, 0, 140, 2); /* [150, 70], not dense */
    ok(STRIDES(ag_put(st, idx, src, true), 70, 1) && same_bits(ag_put(st, idx, src, true), ag_put(plain(st), idx, src, true)),
       "%s put of a transposed input with a step (not dense): row-major, as torch, the row-major bits", dn);
    ag_tensor *p = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1}); /* [50, 20, 30] */
    ag_tensor *pi = ag_from_data((int64_t[]){1, 29999, -1, 617, 1}, AG_SHAPE(5), AG_I64), *ps = ag_randn(AG_SHAPE(5), dt);
    ok(STRIDES(ag_put(p, pi, ps, true), 1, 1500, 50) && same_bits(ag_put(p, pi, ps, true), ag_put(plain(p), pi, ps, true)),
       "%s put of a permuted [50, 20, 30]: (1, 1500, 50), as torch, the row-major bits", dn);
    ok(!ag_put(a, ag_from_data((int64_t[]){0, 10500}, AG_SHAPE(2), AG_I64), ag_randn(AG_SHAPE(2), dt), false) &&
           ag_last_status() == AG_ERR_INDEX,
       "%s put of a transposed input at 10500 of 10500: an index error", dn);
    ag_tensor *i2 = ag_from_data((int64_t[]){3, 0}, AG_SHAPE(2), AG_I64);
    ok(STRIDES(ag_index_add(a, 1, i2, ag_randn(AG_SHAPE(150, 2), dt), 1), 70, 1),
       "%s index_add of a transposed input: row-major, as torch", dn);
    /* gradients through put of a transposed leaf view: the row-major path's bits, .grad row-major */
    ag_tensor *w = ag_randn(AG_SHAPE(150, 70), dt), *sv = ag_randn(AG_SHAPE(40), dt);
    for (int acc = 0; acc <= 1; acc++) {
        ag_tensor *leaf = ag_requires_grad_(ag_randn(AG_SHAPE(70, 150), dt), true);
        ag_tensor *lc = ag_requires_grad_(plain(ag_t(leaf)), true);
        ag_tensor *sg = ag_requires_grad_(ag_clone(sv), true), *sgc = ag_requires_grad_(ag_clone(sv), true);
        ag_tensor *y = ag_exp(ag_put(ag_t(leaf), idx, sg, acc)), *yc = ag_exp(ag_put(lc, idx, sgc, acc));
        ag_backward(ag_sum(ag_mul(y, w)));
        ag_backward(ag_sum(ag_mul(yc, w)));
        ok(STRIDES(y, 1, 150) && same_bits(y, yc) && same_bits(ag_grad(leaf), ag_t(ag_grad(lc))) &&
               same_bits(ag_grad(sg), ag_grad(sgc)) && ag_is_contiguous(ag_grad(leaf)),
           "%s exp(put(a)) of a transposed a (accumulate %d): transposed, the row-major bits, gradients too", dn, acc);
    }
}

/* index_copy keeps a dense x's layout (session 22; torch 1.13 gives row-major there): a transposed x is
 * cloned by one flat copy and src's slices are put along the dim y and src share, in src's memory order
 * (the dims permuted, never reversed: the writes to one element keep the index's order, the last
 * repeat wins as on the row-major path).  The values are the row-major path's bits along either dim,
 * with repeats, for a transposed or row-major src, and a permuted 3-d x; the gradients too. */
static void index_copy_cases(ag_dtype dt, const char *dn) {
    ag_tensor *a = ag_t(ag_randn(AG_SHAPE(70, 150), dt)), *c = ag_randn(AG_SHAPE(150, 70), dt); /* [150, 70] */
    ag_tensor *i5 = ag_from_data((int64_t[]){3, 0, 69, 3, 17}, AG_SHAPE(5), AG_I64); /* 3 twice */
    ag_tensor *s1 = ag_t(ag_randn(AG_SHAPE(5, 150), dt)), *s0 = ag_t(ag_randn(AG_SHAPE(70, 5), dt)); /* [150, 5], [5, 70] */
    ag_tensor *y1 = ag_index_copy(a, 1, i5, s1), *y0 = ag_index_copy(a, 0, i5, s0);
    ok(STRIDES(y1, 1, 150) && STRIDES(y0, 1, 150) && STRIDES(ag_index_copy(c, 1, i5, s1), 70, 1),
       "%s index_copy of a transposed [150, 70] along 1 and 0: transposed; of a row-major: row-major", dn);
    ok(same_bits(y1, ag_index_copy(plain(a), 1, i5, plain(s1))) && same_bits(y0, ag_index_copy(plain(a), 0, i5, plain(s0))),
       "%s index_copy of a transposed x and src along 1 and 0 (a repeat): the row-major path's bits", dn);
    ok(same_bits(ag_index_copy(c, 1, i5, s1), ag_index_copy(c, 1, i5, plain(s1))) &&
           same_bits(ag_index_copy(a, 1, i5, plain(s1)), ag_index_copy(plain(a), 1, i5, plain(s1))),
       "%s index_copy of a row-major x and transposed src, and of a transposed x and row-major src: the row-major bits", dn);
    ag_tensor *p = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1}); /* [50, 20, 30] */
    ag_tensor *ps = ag_permute(ag_randn(AG_SHAPE(20, 5, 50), dt), (int[]){2, 0, 1}); /* [50, 20, 5] */
    ag_tensor *i3 = ag_from_data((int64_t[]){3, 0, 29, 3, 17}, AG_SHAPE(5), AG_I64);
    ok(STRIDES(ag_index_copy(p, 2, i3, ps), 1, 1500, 50) &&
           same_bits(ag_index_copy(p, 2, i3, ps), ag_index_copy(plain(p), 2, i3, plain(ps))),
       "%s index_copy of a permuted [50, 20, 30] along 2: (1, 1500, 50), the row-major bits", dn);
    ag_tensor *w = ag_randn(AG_SHAPE(150, 70), dt);
    ag_tensor *leaf = ag_requires_grad_(ag_randn(AG_SHAPE(70, 150), dt), true), *lc = ag_requires_grad_(plain(ag_t(leaf)), true);
    ag_tensor *sg = ag_requires_grad_(plain(s1), true), *sgc = ag_requires_grad_(plain(s1), true);
    ag_tensor *y = ag_exp(ag_index_copy(ag_t(leaf), 1, i5, sg)), *yc = ag_exp(ag_index_copy(lc, 1, i5, sgc));
    ag_backward(ag_sum(ag_mul(y, w)));
    ag_backward(ag_sum(ag_mul(yc, w)));
    ok(STRIDES(y, 1, 150) && same_bits(y, yc) && same_bits(ag_grad(leaf), ag_t(ag_grad(lc))) &&
           same_bits(ag_grad(sg), ag_grad(sgc)),
       "%s exp(index_copy(a)) of a transposed a: transposed, the row-major bits, gradients too", dn);
}

int main(void) {
    for (int threads = 1; threads <= 2; threads++) {
        ag_set_num_threads(threads);
        diag("%d thread(s)", threads);
        ag_manual_seed(17);
        ag_scope_begin();
        strides_cases(AG_F32);
        strides_cases(AG_F64);
        strides_more(AG_F32);
        strides_more(AG_F64);
        value_more(AG_F32, "float32");
        value_more(AG_F64, "float64");
        grad_more(AG_F32, "float32");
        grad_more(AG_F64, "float64");
        value_cases(AG_F32, "float32");
        value_cases(AG_F64, "float64");
        grad_cases(AG_F32, "float32");
        grad_cases(AG_F64, "float64");
        loss_cases(AG_F32, "float32");
        loss_cases(AG_F64, "float64");
        flip_cases(AG_F32, "float32");
        flip_cases(AG_F64, "float64");
        put_cases(AG_F32, "float32");
        put_cases(AG_F64, "float64");
        index_copy_cases(AG_F32, "float32");
        index_copy_cases(AG_F64, "float64");
        ag_scope_end();
    }
    return tap_done();
}

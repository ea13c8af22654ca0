/*
 * attention.c - scaled dot-product attention as one op:
 *     y = dropout(softmax(q·kᵀ/√E + mask)) · v
 * over any leading (batch, head) dims, q [..., L, E], k [..., S, E], v [..., S, Ev].
 *
 * Memory: the forward makes one [..., L, S] buffer (the scores, turned into the
 * probabilities P in place) and the output; is_causal masks inside the softmax loop
 * (no [L, S] mask tensor is built); a user mask is read through its own strides,
 * broadcast, never expanded into a copy.  The adjoint REUSES the saved P rather than
 * recomputing it: P is already in memory at the end of the forward, and recomputing
 * would cost the forward's q·kᵀ product and softmax again for the same [..., L, S]
 * buffer at its peak.  With dropout it also keeps the dropped, rescaled P' (the keep
 * mask is P' ≠ 0), so saved holds [P, P'] (2·L·S per batch).  The adjoint makes one
 * more [..., L, S] buffer (dP, turned into dS in place).
 *
 * The second-order and tangent rules (at the end) are written in agrad ops; they rebuild
 * P as a differentiable function of q and k from the saved P, so the node needs no mask.
 *
 * Rows that every key is masked out of give zero output and zero gradients (PyTorch
 * 1.13 gives NaN there).  The mask is a constant: no gradient flows into a float mask.
 */
#include <math.h>
#include <omp.h>
#include <string.h>
#include "core/autocast.h"
#include "core/dnnl_cache.h"
#include "core/iter.h"
#include "core/parallel.h"
#include "core/simd_extreme.h"
#include "core/sum.h"
#include "ops/vexpf.h"
#include "autograd/tape.h"
#include "ops/matmul.h"
#include "ops/attention.h"
#include "ops/jvp.h"
#include "agrad/ops.h"

/* Per product, the multiply-adds up to which ag__batched_gemm's naive loop beats a library call
 * (ops/matmul.c's TINY_MACS), and in all, those from which a batch of products uses every
 * thread (its PAR_MACS). */
#define BMM_TINY_MACS 256
#define BMM_PAR_MACS ((int64_t)1 << 21)

/* The strides of the last two dims of t as op(t)'s rows and columns (tr: transposed), a dim of
 * size 1 given stride 1 (any stride serves it; 1 keeps the other dim's layout plain). */
static void mat_strides(const ag_tensor *t, bool tr, int64_t *rs, int64_t *cs) {
    const int n = t->ndim;
    const int r = tr ? n - 1 : n - 2, c = tr ? n - 2 : n - 1;
    *rs = t->shape[r] == 1 ? 1 : t->stride[r];
    *cs = t->shape[c] == 1 ? 1 : t->stride[c];
}

/* c = op(a)·op(b) for c [batch..., m, n] contiguous and a, b of c's batch dims (ta, tb: their
 * last two dims transposed).  float32 products past the naive loop go to oneDNN as ONE batched
 * primitive call: the batch dims merged where the strides of a and b allow, at most two left
 * (nn.MultiheadAttention's heads, read in place from the packed projection, are [B, H] with
 * strides 3E and D), a and b read through their strides.  Otherwise (float64, oneDNN off, bf16
 * autocast, the reference backend, an operand broadcast (stride 0) or an unmergeable batch, or
 * no primitive) ag__batched_gemm, product by product.  The transformer step's 8 x 4 heads of
 * 128x64 (bench_tfm_parts sdpa, one thread, CPU time, medians of 5 alternated runs at load
 * 8-16): forward 1798 -> 1751 µs, backward 5116 -> 4281 µs; each product alone runs at the
 * same rate either way (~110 GFLOP/s), the gain is the 32 lookups, rebinds and executes. */
static ag_status bmm(ag_tensor *c, const ag_tensor *a, bool ta, const ag_tensor *b, bool tb) {
    const int n = c->ndim;
    const int64_t m = c->shape[n - 2], nn = c->shape[n - 1], k = ta ? a->shape[n - 2] : a->shape[n - 1];
    int64_t batch[2] = {1, 1}, sa[4], sb[4], nbatch = 1;
    int kept = 0;
    bool ok = c->dtype == AG_F32 && ag_onednn_enabled() && !ag__autocast_state() &&
              ag__backend != AG_BACKEND_REFERENCE && m > 0 && nn > 0 && k > 0;
    for (int d = 0; ok && d < n - 2; d++) { /* merge the batch dims, outermost first */
        const int64_t s = c->shape[d], as = a->stride[d], bs = b->stride[d];
        if (s == 1) continue;
        nbatch *= s; /* at most c's element count */
        if (kept && sa[kept - 1] == as * s && sb[kept - 1] == bs * s) {
            batch[kept - 1] *= s, sa[kept - 1] = as, sb[kept - 1] = bs;
            continue;
        }
        ok = kept < 2 && as != 0 && bs != 0;
        if (ok) batch[kept] = s, sa[kept] = as, sb[kept] = bs, kept++;
    }
    int64_t each, total; /* multiply-adds per product and in all, saturated: they only pick the path */
    if (ag__mul_overflow(m * nn, k, &each)) each = INT64_MAX; /* m·n: at most c's element count */
    if (ag__mul_overflow(each, nbatch, &total)) total = INT64_MAX;
    ok = ok && kept > 0 && nbatch > 1 && (each > BMM_TINY_MACS || ag__backend == AG_BACKEND_ACCEL);
    if (ok) {
        if (kept == 1) /* one batch dim: the outer one of size 1 */
            batch[1] = batch[0], sa[1] = sa[0], sb[1] = sb[0], batch[0] = 1, sa[0] = sa[1] * batch[1],
            sb[0] = sb[1] * batch[1];
        mat_strides(a, ta, &sa[2], &sa[3]);
        mat_strides(b, tb, &sb[2], &sb[3]);
        ok = sa[2] && sa[3] && sb[2] && sb[3]; /* a dy broadcast along its rows or columns: not for gemm */
    }
    if (ok) {
        const int threads = omp_in_parallel() || (total < BMM_PAR_MACS && ag__backend != AG_BACKEND_ACCEL)
                                ? 1 : omp_get_max_threads();
        if (ag__dnnl_matmul_batched(batch, m, k, nn, (const float *)ag__ptr(a), sa, (const float *)ag__ptr(b), sb,
                                    (float *)ag__ptr(c), 1.0f, threads))
            return AG_OK;
    }
    return ag__batched_gemm(c, a, ta, b, tb);
}

/* Where each batch's mask rows start: mask broadcast to [batch..., L, S] read through
 * its strides (0 on broadcast dims). */
typedef struct mask_geom {
    const ag_tensor *m;
    int64_t stride[AG_MAX_DIMS]; /* aligned to the scores' dims, 0 where broadcast */
} mask_geom;

static void mask_geom_init(mask_geom *g, const ag_tensor *m, int nd, const int64_t *shape) {
    g->m = m;
    for (int d = 0; d < nd; d++) {
        int md = d - (nd - (m ? m->ndim : 0));
        g->stride[d] = m && md >= 0 && m->shape[md] != 1 ? m->stride[md] : 0;
    }
    (void)shape;
}

/* Softmax of one row of S scores in place, with the row's mask applied first:
 * x_j = x_j·scale + add_j (float mask) or -inf where keep_j is false (bool mask) or
 * j > i (causal).  A row with nothing kept becomes zeros. */
#define SOFTMAX_ROW(SUF, T)                                                                                   \
    static void softmax_row_##SUF(T *x, int64_t S, double scale, const ag_tensor *m, int64_t moff,            \
                                  int64_t mstride, int64_t causal_limit) {                                     \
        double mx = -INFINITY;                                                                                \
        for (int64_t j = 0; j < S; j++) {                                                                     \
            double s = (double)x[j] * scale;                                                                  \
            if (j > causal_limit) s = -INFINITY;                                                              \
            else if (m && m->dtype == AG_BOOL) {                                                              \
                if (!((const bool *)ag__ptr(m))[moff + j * mstride]) s = -INFINITY;                           \
            } else if (m)                                                                                     \
                s += (double)((const T *)ag__ptr(m))[moff + j * mstride];                                     \
            x[j] = (T)s;                                                                                      \
            if (s > mx) mx = s;                                                                               \
        }                                                                                                     \
        if (mx == -INFINITY) {                                                                                \
            for (int64_t j = 0; j < S; j++) x[j] = 0;                                                         \
            return;                                                                                           \
        }                                                                                                     \
        double sum = 0;                                                                                       \
        for (int64_t j = 0; j < S; j++) {                                                                     \
            double e = exp((double)x[j] - mx);                                                                \
            x[j] = (T)e;                                                                                      \
            sum += e;                                                                                         \
        }                                                                                                     \
        for (int64_t j = 0; j < S; j++) x[j] = (T)((double)x[j] / sum);                                       \
    }
SOFTMAX_ROW(f32, float)
SOFTMAX_ROW(f64, double)

/* dS_j = scale·P_j·(dP_j - Σ_k dP_k·P_k), in place over dp; dP_j first multiplied by drop_j (the
 * dropout keep mask times 1/(1-p): P'_j ≠ 0) when pd is given */
static void softmax_row_bwd_f64(double *dp, const double *p, const double *pd, double inv_keep, int64_t S,
                                double scale) {
    double dot = 0;
    for (int64_t j = 0; j < S; j++) {
        if (pd) dp[j] = pd[j] != 0 ? dp[j] * inv_keep : 0;
        dot += dp[j] * p[j];
    }
    for (int64_t j = 0; j < S; j++) dp[j] = scale * p[j] * (dp[j] - dot);
}

/* float32 rows in vectorised passes: the scores' max, then e_j = exp(s_j - max) by vexpf with
 * Σe in float64 (AG_SUM8), then e_j·(1/Σe), s_j = x_j·scale + add_j computed again in each pass
 * rather than stored (the mask is read through its strides).  Only the first `kept` keys take
 * part (is_causal: the keys up to the query's index); the others become 0.  Returns false,
 * with x untouched, for a row whose max is NaN or +inf or that nothing is kept in: the
 * float64 row above does those.  Cloned for AVX-512 too (AG_VEC_CLONES_512: the same bits, the
 * sums' order fixed by AG_SUM8), as the adjoint's rows below: the transformer step's forward
 * (bench_tfm_parts sdpa, 4096 rows of 128, one thread, CPU time, 4 alternated runs, load 17)
 * 1715-1778 -> 1515-1673 µs. */
/* The max pass and the exp pass over the kept keys with score SCORE(j); a masked key (-inf) is 0
 * without vexpf: its underflowing scales cost ~30 ns an element in microcode assists. */
#define MASKED_PASSES(SCORE)                                                                                  \
    do {                                                                                                      \
        int live = 0; /* a key kept: not read off mx, whose simd start clang makes -FLT_MAX, not -inf */      \
        _Pragma("omp simd reduction(max : mx) reduction(| : bad, live)")                                      \
        for (int64_t j = 0; j < kept; j++) {                                                                  \
            const float s = SCORE(j);                                                                         \
            mx = s > mx ? s : mx;                                                                             \
            bad |= s != s;                                                                                    \
            live |= s > -INFINITY;                                                                            \
        }                                                                                                     \
        if (bad || !live || !(mx > -INFINITY && mx < INFINITY)) return false;                                 \
        _Pragma("omp simd")                                                                                   \
        for (int64_t j = 0; j < kept; j++) {                                                                  \
            const float s = SCORE(j), e = vexpf(s > -INFINITY ? s - mx : 0.0f);                               \
            x[j] = s > -INFINITY ? e : 0.0f;                                                                  \
        }                                                                                                     \
    } while (0)
#define BOOL_SCORE(j) (mb[j] != 0 ? x[j] * fs : -INFINITY)
#define BOOL_SCORE_STRIDED(j) (mb[(j) * mstride] != 0 ? x[j] * fs : -INFINITY)
#define FLOAT_SCORE(j) (x[j] * fs + mf[j])
#define FLOAT_SCORE_STRIDED(j) (x[j] * fs + mf[(j) * mstride])
AG_VEC_CLONES_512 static bool softmax_row_fast_f32(float *restrict x, int64_t S, float fs, const ag_tensor *m,
                                                   int64_t moff, int64_t mstride, int64_t kept) {
    float mx = -INFINITY;
    int bad = 0;
    /* the row's mask, bool (read as bytes: the loops over _Bool did not vectorise) or float, from
     * moff elements past the mask's first; unit strides get loops of their own, which vectorise */
    const unsigned char *restrict mb = m && m->dtype == AG_BOOL ? (const unsigned char *)ag__ptr(m) + moff : NULL;
    const float *restrict mf = m && !mb ? (const float *)ag__ptr(m) + moff : NULL;
    if (!m) {
        _Pragma("omp simd reduction(max : mx) reduction(| : bad)")
        for (int64_t j = 0; j < kept; j++) {
            const float s = x[j] * fs;
            mx = s > mx ? s : mx;
            bad |= s != s;
        }
        AG_SIMD_EXTREME_FIX(float, mx, kept, j, x[j] * fs, AG_GREATER, -INFINITY);
        if (bad || !(mx > -INFINITY && mx < INFINITY)) return false;
        for (int64_t j = 0; j < kept; j++) x[j] = vexpf(x[j] * fs - mx);
    } else if (mb && mstride == 1)
        MASKED_PASSES(BOOL_SCORE);
    else if (mb)
        MASKED_PASSES(BOOL_SCORE_STRIDED);
    else if (mstride == 1)
        MASKED_PASSES(FLOAT_SCORE);
    else
        MASKED_PASSES(FLOAT_SCORE_STRIDED);
    double sum;
    AG_SUM8(sum, kept, j, (double)x[j]);
    const float r = (float)(1 / sum);
    for (int64_t j = 0; j < kept; j++) x[j] *= r;
    for (int64_t j = kept; j < S; j++) x[j] = 0;
    return true;
}
#undef MASKED_PASSES
#undef BOOL_SCORE
#undef BOOL_SCORE_STRIDED
#undef FLOAT_SCORE
#undef FLOAT_SCORE_STRIDED

/* float32 dS_j = scale·P_j·(dP_j - Σ_k dP_k·P_k) in vectorised passes (the sum in float64),
 * dP_j first multiplied by drop_j when pd is given, as softmax_row_bwd_f32 */
AG_VEC_CLONES_512 static void softmax_row_bwd_fast_f32(float *restrict dp, const float *restrict p,
                                                       const float *restrict pd, float inv_keep, int64_t S, float fs) {
    if (pd)
        for (int64_t j = 0; j < S; j++) dp[j] = pd[j] != 0 ? dp[j] * inv_keep : 0.0f;
    double dot;
    AG_SUM8(dot, S, j, (double)dp[j] * (double)p[j]);
    const float d = (float)dot;
    for (int64_t j = 0; j < S; j++) dp[j] = fs * p[j] * (dp[j] - d);
}

/* The scores' rows of one pass (forward or adjoint) and what they need. */
typedef struct rows_job {
    ag_tensor *sc;          /* [batch..., L, S] contiguous: the scores (forward) or dP (adjoint) */
    const ag_tensor *P, *Pd; /* adjoint: the saved P and P' (NULL without dropout) */
    const ag_tensor *mask;
    mask_geom g;
    double scale, inv_keep;
    bool causal;
} rows_job;

/* Rows [r0, r1) of the forward: the probabilities in place. */
static void forward_rows(const rows_job *J, int64_t r0, int64_t r1) {
    ag_tensor *sc = J->sc;
    const int nd = sc->ndim;
    const int64_t S = sc->shape[nd - 1];
    int64_t idx[AG_MAX_DIMS] = {0};
    int64_t rest = r0;
    for (int d = nd - 2; d >= 0; d--) { /* r0's index along each dim but the last */
        idx[d] = rest % sc->shape[d];
        rest /= sc->shape[d];
    }
    for (int64_t r = r0; r < r1; r++) {
        int64_t moff = 0; /* from the mask's first element (ag__ptr counts its offset) */
        for (int d = 0; d < nd - 1; d++) moff += idx[d] * J->g.stride[d];
        const int64_t i = idx[nd - 2], limit = J->causal ? i : S;
        if (sc->dtype == AG_F64)
            softmax_row_f64((double *)ag__ptr(sc) + r * S, S, J->scale, J->mask, moff, J->g.stride[nd - 1], limit);
        else if (!softmax_row_fast_f32((float *)ag__ptr(sc) + r * S, S, (float)J->scale, J->mask, moff,
                                       J->g.stride[nd - 1], limit < S ? limit + 1 : S))
            softmax_row_f32((float *)ag__ptr(sc) + r * S, S, J->scale, J->mask, moff, J->g.stride[nd - 1], limit);
        for (int d = nd - 2; d >= 0; d--) {
            if (++idx[d] < sc->shape[d]) break;
            idx[d] = 0;
        }
    }
}

/* Rows [r0, r1) of the adjoint: dP turned into dS in place. */
static void backward_rows(const rows_job *J, int64_t r0, int64_t r1) {
    const int64_t S = J->sc->shape[J->sc->ndim - 1];
    for (int64_t r = r0; r < r1; r++) {
        if (J->sc->dtype == AG_F64)
            softmax_row_bwd_f64((double *)ag__ptr(J->sc) + r * S, (const double *)ag__ptr(J->P) + r * S,
                                J->Pd ? (const double *)ag__ptr(J->Pd) + r * S : NULL, J->inv_keep, S, J->scale);
        else softmax_row_bwd_fast_f32((float *)ag__ptr(J->sc) + r * S, (const float *)ag__ptr(J->P) + r * S,
                                      J->Pd ? (const float *)ag__ptr(J->Pd) + r * S : NULL, (float)J->inv_keep, S,
                                      (float)J->scale);
    }
}

/* Every row of J->sc through forward_rows or backward_rows, the rows split over the threads
 * (each row computed whole by one thread: the same bits on any thread count). */
static void all_rows(const rows_job *J, bool forward) {
    const int nd = J->sc->ndim;
    const int64_t n = ag__numel(nd, J->sc->shape);
    if (n == 0) return; /* no row is walked (there may be 2^62 of no key) */
    const int64_t rows = ag__numel(nd - 1, J->sc->shape);
    const int nt = ag__threads_for(n);
    if (nt <= 1 || rows < 2) {
        if (forward) forward_rows(J, 0, rows);
        else backward_rows(J, 0, rows);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        const int64_t per = rows / nt, more = rows % nt; /* thread t: per rows, one more while t < more */
        const int64_t r0 = t * per + (t < more ? t : more), r1 = r0 + per + (t < more);
        if (forward) forward_rows(J, r0, r1);
        else backward_rows(J, r0, r1);
    }
}

/* The probabilities for every row of sc ([batch..., L, S], contiguous), in place. */
static void softmax_all(ag_tensor *sc, double scale, const ag_tensor *mask, bool causal) {
    rows_job J = {.sc = sc, .mask = mask, .scale = scale, .causal = causal};
    mask_geom_init(&J.g, mask, sc->ndim, sc->shape);
    all_rows(&J, true);
}

static ag_status sdpa_backward(ag_tensor *out, ag_tensor *gout);
static ag_status sdpa_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *sdpa_jvp(ag_tensor *out, ag_tensor *const *tin);
/* y = softmax(q·kᵀ/√E + mask)·v;  dv = Pᵀ·dy, dS = P⊙(dy·vᵀ - rowsum(P⊙dy·vᵀ))/√E, dq = dS·k, dk = dSᵀ·q */
static const ag_op op_sdpa = {.name = "scaled_dot_product_attention", .grad_fn = "ScaledDotProductAttentionBackward0",
                              .backward = sdpa_backward,
                              .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_SAVES_IN2 | AG_GOUT_ANY_STRIDES,
                              .math = "P = softmax(q·kᵀ/√E + mask), y = P·v;  "
                                      "dv = Pᵀ·dy, dS = P⊙(dP - rowsum(P⊙dP))/√E with dP = dy·vᵀ, dq = dS·k, "
                                      "dk = dSᵀ·q (P saved, not recomputed)",
                              .backward_graph = sdpa_backward_graph, .jvp = sdpa_jvp,
                              .tangent = "ẏ = (Ṗ⊙keep)·v + P'·v̇, P' = P⊙keep the dropped P, Ṗ = P⊙(Ṡ - rowsum(P⊙Ṡ)), "
                                         "Ṡ = (q̇·kᵀ + q·k̇ᵀ)/√E"};

/* Checks the operands; fills the scores' shape [batch..., L, S]. */
static ag_status check_args(ag_tensor *q, ag_tensor *k, ag_tensor *v, ag_tensor *mask, double p, bool causal,
                            int64_t *sshape) {
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR], s3[AG_SHAPE_STR];
    const char *op = "scaled_dot_product_attention";
    if (ag__check_float(op, q, k) || ag__check_float(op, q, v)) return ag_last_status();
    if (q->ndim < 2 || k->ndim != q->ndim || v->ndim != q->ndim)
        return ag__fail(AG_ERR_SHAPE, "%s: query %s, key %s and value %s must have the same number of dims, at least 2",
                        op, ag__tshape(s1, q), ag__tshape(s2, k), ag__tshape(s3, v));
    const int n = q->ndim;
    bool same = q->shape[n - 1] == k->shape[n - 1] && k->shape[n - 2] == v->shape[n - 2];
    for (int d = 0; d < n - 2; d++) same = same && q->shape[d] == k->shape[d] && q->shape[d] == v->shape[d];
    if (!same)
        return ag__fail(AG_ERR_SHAPE, "%s: query %s [..., L, E], key %s [..., S, E] and value %s [..., S, Ev] do not "
                        "match", op, ag__tshape(s1, q), ag__tshape(s2, k), ag__tshape(s3, v));
    for (int d = 0; d < n - 1; d++) sshape[d] = q->shape[d];
    sshape[n - 1] = k->shape[n - 2];
    if (mask) {
        if (mask->dtype != AG_BOOL && mask->dtype != q->dtype)
            return ag__fail(AG_ERR_DTYPE, "%s: attn_mask must be bool or of the query's dtype", op);
        bool fits = mask->ndim <= n;
        for (int d = 0; fits && d < mask->ndim; d++) {
            int64_t md = mask->shape[mask->ndim - 1 - d];
            fits = md == 1 || md == sshape[n - 1 - d];
        }
        if (!fits)
            return ag__fail(AG_ERR_SHAPE, "%s: attn_mask %s does not broadcast to the scores [..., L, S] of query %s "
                            "and key %s", op, ag__tshape(s1, mask), ag__tshape(s2, q), ag__tshape(s3, k));
        if (causal) return ag__fail(AG_ERR_VALUE, "%s: give attn_mask or is_causal, not both", op);
    }
    if (!(p >= 0 && p < 1)) return ag__fail(AG_ERR_VALUE, "%s: dropout_p %g must be in [0, 1)", op, p);
    return AG_OK;
}

static ag_status bmm_into(ag_tensor *c, const ag_tensor *a, bool ta, const ag_tensor *b, bool tb);

/* y = dropout(softmax(q·kᵀ/√E + mask))·v for checked operands (sshape: the scores' shape), not
 * recorded, into yv (a view with unit column step: bmm_into) or, yv NULL, a new contiguous y;
 * *saved gets P (and P' with dropout) for the adjoint.  y or yv, NULL on failure (recorded). */
static ag_tensor *sdpa_run(ag_tensor *q, ag_tensor *k, ag_tensor *v, ag_tensor *attn_mask, double dropout_p,
                           bool is_causal, const int64_t *sshape, ag_tensor *yv, ag_tensor **saved_out) {
    const int n = q->ndim;
    const int64_t E = q->shape[n - 1];
    const double scale = E > 0 ? 1.0 / sqrt((double)E) : 1.0;
    int64_t yshape[AG_MAX_DIMS];
    memcpy(yshape, q->shape, sizeof(int64_t) * (size_t)n);
    yshape[n - 1] = v->shape[n - 1];
    const int64_t nsc = ag__numel(n, sshape);
    const bool drop = dropout_p > 0;
    int64_t nsaved = drop ? 2 * nsc : nsc; /* at most 2^63: each of nsc, the output fits in 2^62 */
    int64_t sstride[AG_MAX_DIMS];
    ag__contiguous_strides(n, sshape, sstride);
    ag_tensor *saved = ag__new_unowned(q->dtype, 1, &nsaved, false);
    ag_tensor *sc = saved ? ag__new_view_unowned(saved, n, sshape, sstride, 0) : NULL;
    ag_tensor *y = !sc ? NULL : yv ? yv : ag__new(q->dtype, n, yshape);
    if (!y) goto fail;
    if (bmm(sc, q, false, k, true)) goto fail;
    softmax_all(sc, scale, attn_mask, is_causal);
    ag_tensor *pv = sc;
    if (drop) {
        int64_t off = nsc;
        pv = ag__new_view_unowned(saved, n, sshape, sstride, off);
        if (!pv) goto fail;
        ag__rand_keep_mask(ag__ptr(pv), q->dtype, nsc, 1 - dropout_p, 1 / (1 - dropout_p));
        for (int64_t i = 0; i < nsc; i++) {
            if (q->dtype == AG_F64) ((double *)ag__ptr(pv))[i] *= ((double *)ag__ptr(sc))[i];
            else ((float *)ag__ptr(pv))[i] *= ((float *)ag__ptr(sc))[i];
        }
    }
    ag_status st = yv ? bmm_into(y, pv, false, v, false) : bmm(y, pv, false, v, false);
    if (pv != sc) ag_release(pv);
    ag_release(sc);
    sc = NULL;
    if (st) goto fail;
    *saved_out = saved;
    return y;
fail:
    ag_release(sc);
    ag_release(saved);
    if (y != yv) ag__discard(y);
    return NULL;
}

/* y = dropout(softmax(q·kᵀ/√E + mask))·v */
ag_tensor *ag_scaled_dot_product_attention(ag_tensor *q, ag_tensor *k, ag_tensor *v, ag_tensor *attn_mask,
                                           double dropout_p, bool is_causal) {
    AG_CHECK_HANDLES(NULL, "scaled_dot_product_attention", q, k, v, attn_mask);
    if (!q || !k || !v) return NULL;
    int64_t sshape[AG_MAX_DIMS];
    if (check_args(q, k, v, attn_mask, dropout_p, is_causal, sshape)) return NULL;
    ag_tensor *saved = NULL, *y = sdpa_run(q, k, v, attn_mask, dropout_p, is_causal, sshape, NULL, &saved);
    if (!y) return NULL;
    ag_tensor *in[3] = {q, k, v};
    if (ag__needs_grad(in, 3)) {
        y->attr.a = dropout_p;
        if (!ag__record_saved(y, &op_sdpa, in, 3, saved)) return NULL;
    } else {
        ag_release(saved);
    }
    return ag__check_finite(y, "scaled_dot_product_attention");
}

/* dv = P'ᵀ·dy;  dP' = dy·vᵀ, dP = dP'⊙keep/(1-p), dS = P⊙(dP - rowsum(P⊙dP))/√E;  dq = dS·k, dk = dSᵀ·q
 * (dy with any strides, AG_GOUT_ANY_STRIDES: the products read it through them; the gradient of
 * nn.MultiheadAttention's merged heads comes as a permuted view, not copied) */
static ag_status sdpa_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *q = out->in[0], *k = out->in[1], *v = out->in[2];
    const int n = q->ndim;
    int64_t sshape[AG_MAX_DIMS];
    for (int d = 0; d < n - 1; d++) sshape[d] = q->shape[d];
    sshape[n - 1] = k->shape[n - 2];
    const int64_t nsc = ag__numel(n, sshape);
    const double p = out->attr.a, E = (double)q->shape[n - 1];
    const double scale = E > 0 ? 1.0 / sqrt(E) : 1.0;
    const bool drop = p > 0;
    int64_t sstride[AG_MAX_DIMS];
    ag__contiguous_strides(n, sshape, sstride);
    ag_tensor *P = ag__new_view_unowned(out->saved, n, sshape, sstride, 0);
    ag_tensor *Pd = P && drop ? ag__new_view_unowned(out->saved, n, sshape, sstride, nsc) : NULL;
    ag_tensor *dp = NULL, *gq, *gk, *gv;
    ag_status st = AG_OK;
    if (!P || (drop && !Pd)) {
        st = AG_ERR_NOMEM;
        goto done;
    }
    if (ag__wants(out, 2)) {
        if (!(gv = ag__new_unowned(v->dtype, n, v->shape, false))) st = AG_ERR_NOMEM;
        else if ((st = bmm(gv, drop ? Pd : P, true, gout, false))) ag_release(gv);
        else st = ag__accumulate(v, gv);
        gv = NULL;
        if (st) goto done;
    }
    if (!ag__wants(out, 0) && !ag__wants(out, 1)) goto done;
    if (!(dp = ag__new_unowned(q->dtype, n, sshape, false))) {
        st = AG_ERR_NOMEM;
        goto done;
    }
    if ((st = bmm(dp, gout, false, v, true))) goto done;
    rows_job J = {.sc = dp, .P = P, .Pd = Pd, .scale = scale, .inv_keep = 1 / (1 - p)};
    all_rows(&J, false);
    if (ag__wants(out, 0)) {
        if (!(gq = ag__new_unowned(q->dtype, n, q->shape, false))) st = AG_ERR_NOMEM;
        else if ((st = bmm(gq, dp, false, k, false))) ag_release(gq);
        else st = ag__accumulate(q, gq);
        gq = NULL;
        if (st) goto done;
    }
    if (ag__wants(out, 1)) {
        if (!(gk = ag__new_unowned(k->dtype, n, k->shape, false))) st = AG_ERR_NOMEM;
        else if ((st = bmm(gk, dp, true, q, false))) ag_release(gk);
        else st = ag__accumulate(k, gk);
        gk = NULL;
    }
done:
    ag_release(dp);
    ag_release(P);
    ag_release(Pd);
    return st;
}

/* ---- the rules in differentiable ops (create_graph, forward mode) -------------------------------
 * Both need P as a function of q and k.  The node keeps P₀ (the saved probabilities) but not the
 * mask, and needs neither: with S = q·kᵀ/√E and Z = S - detach(S) (0 in value, S in derivative),
 * softmax(S + mask) = P₀⊙e^Z / Σ_row P₀⊙e^Z holds exactly, so P below equals P₀ and has the
 * softmax's derivatives of every order, whatever the mask or is_causal; masked places are 0 in P₀
 * and stay 0 (no -inf is formed).  A row every key is masked out of (P₀ all 0) is divided by 1
 * instead of 0, and stays 0 as in the forward. */
typedef struct sdpa_parts {
    ag_tensor *P;    /* the probabilities, differentiable in q and k */
    ag_tensor *keep; /* dropout: the keep mask times 1/(1-p), a constant; NULL without dropout */
    ag_tensor *Pd;   /* P⊙keep (P without dropout): what multiplies v */
    int n;           /* the operands' ndim */
    double scale;    /* 1/√E */
} sdpa_parts;

static ag_tensor *mT(ag_tensor *t) { return ag_transpose(t, t->ndim - 2, t->ndim - 1); }

/* The parts for q and k (differentiable) and the node's saved P (and P'), dropout p. */
static ag_status sdpa_parts_make(ag_tensor *q, ag_tensor *k, ag_tensor *saved, double p, sdpa_parts *s) {
    const int n = q->ndim;
    const ag_dtype dt = q->dtype;
    const double E = (double)q->shape[n - 1];
    int64_t sshape[AG_MAX_DIMS], sstride[AG_MAX_DIMS];
    for (int d = 0; d < n - 1; d++) sshape[d] = q->shape[d];
    sshape[n - 1] = k->shape[n - 2];
    ag__contiguous_strides(n, sshape, sstride);
    s->n = n;
    s->scale = E > 0 ? 1.0 / sqrt(E) : 1.0;
    ag_tensor *P0 = ag__new_view(saved, n, sshape, sstride, 0), *zero = ag_scalar(0, dt);
    ag_tensor *S = ag_mul_scalar(ag_matmul(q, mT(k)), s->scale);
    ag_tensor *w = ag_mul(P0, ag_exp(ag_sub(S, ag_detach(S))));
    ag_tensor *dead = ag_to_dtype(ag_eq(ag_sum_dim(P0, n - 1, true), zero), dt);
    s->P = s->Pd = ag_div(w, ag_add(ag_sum_dim(w, n - 1, true), dead));
    s->keep = NULL;
    if (p > 0) {
        ag_tensor *Pd0 = ag__new_view(saved, n, sshape, sstride, ag__numel(n, sshape));
        s->keep = ag_mul_scalar(ag_to_dtype(ag_ne(Pd0, zero), dt), 1 / (1 - p));
        s->Pd = ag_mul(s->P, s->keep);
    }
    return s->Pd ? AG_OK : ag_last_status();
}

static ag_status sdpa_parts_of(ag_tensor *out, sdpa_parts *s) {
    return sdpa_parts_make(out->in[0], out->in[1], out->saved, out->attr.a, s);
}

/* dS = P⊙(dP - rowsum(P⊙dP))/√E: the scores' gradient (or tangent) from the probabilities'. */
static ag_tensor *scores_from_probs(const sdpa_parts *s, ag_tensor *dP) {
    ag_tensor *dot = ag_sum_dim(ag_mul(s->P, dP), s->n - 1, true);
    return ag_mul_scalar(ag_mul(s->P, ag_sub(dP, dot)), s->scale);
}

/* dv = P'ᵀ·dy;  dP = (dy·vᵀ)⊙keep, dS = P⊙(dP - rowsum(P⊙dP))/√E;  dq = dS·k, dk = dSᵀ·q */
static ag_status sdpa_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *q = out->in[0], *k = out->in[1], *v = out->in[2];
    sdpa_parts s;
    if (sdpa_parts_of(out, &s)) return ag_last_status();
    if (ag__wants(out, 2) && !(gin[2] = ag_matmul(mT(s.Pd), gout))) return ag_last_status();
    if (!ag__wants(out, 0) && !ag__wants(out, 1)) return AG_OK;
    ag_tensor *dP = ag_matmul(gout, mT(v));
    ag_tensor *dS = scores_from_probs(&s, s.keep ? ag_mul(dP, s.keep) : dP);
    if (ag__wants(out, 0) && !(gin[0] = ag_matmul(dS, k))) return ag_last_status();
    if (ag__wants(out, 1) && !(gin[1] = ag_matmul(mT(dS), q))) return ag_last_status();
    return AG_OK;
}

/* dy = (dP⊙keep)·v + P'·dv,  dP = P⊙(dS - rowsum(P⊙dS)),  dS = (dq·kᵀ + q·dkᵀ)/√E, from the
 * tangents tq, tk, tv (NULL: zero) of q, k, v */
static ag_tensor *sdpa_tangent(const sdpa_parts *s, ag_tensor *q, ag_tensor *k, ag_tensor *v, ag_tensor *tq,
                               ag_tensor *tk, ag_tensor *tv) {
    ag_tensor *dy = NULL;
    if (tq || tk) {
        ag_tensor *dS = NULL;
        if (tq) dS = ag__jvp_add(dS, ag_matmul(tq, mT(k)));
        if (tk) dS = ag__jvp_add(dS, ag_matmul(q, mT(tk)));
        ag_tensor *dP = scores_from_probs(s, dS); /* its 1/√E is the scores' */
        dy = ag_matmul(s->keep ? ag_mul(dP, s->keep) : dP, v);
        if (!dy) return NULL;
    }
    if (tv) dy = ag__jvp_add(dy, ag_matmul(s->Pd, tv));
    return dy;
}

static ag_tensor *sdpa_jvp(ag_tensor *out, ag_tensor *const *tin) {
    sdpa_parts s;
    if (sdpa_parts_of(out, &s)) return NULL;
    return sdpa_tangent(&s, out->in[0], out->in[1], out->in[2], tin[0], tin[1], tin[2]);
}

/* ---- attention on a packed projection --------------------------------------------------------
 * nn.MultiheadAttention's self-attention projects x once, qkv = x·W_inᵀ + b_in [T, B, 3E] (sequence
 * first) or [B, T, 3E], and attends the heads q, k, v [B, H, T, D] read in place from it.  As views
 * (reshape, select, permute) each head's gradient reached qkv's through its select's adjoint: a 3 MiB
 * gradient zeroed, one third copied in and two added (transformer_128x8x256: memset and the strided
 * adds ~1.6% of the step's samples).  As one op of qkv the adjoint writes dq, dk and dv straight into
 * their thirds of one new gradient of qkv's shape, each element once. */

/* Part w of `parts` of t ([T, B, parts·E] with seq_first, else [B, T, parts·E], any strides: qkv, its
 * gradient (3 parts: q, k, v) or the merged heads y, dy (1)) as the heads [B, H, T, D], a view read
 * through strides. */
static ag_tensor *packed_heads(const ag_tensor *t, int parts, int64_t H, bool seq_first, int w) {
    const int b = seq_first ? 1 : 0, tt = 1 - b;
    const int64_t E = t->shape[2] / parts, D = E / H;
    const int64_t shape[4] = {t->shape[b], H, t->shape[tt], D};
    const int64_t stride[4] = {t->stride[b], D * t->stride[2], t->stride[tt], t->stride[2]};
    return ag__new_view_unowned(t, 4, shape, stride, t->offset + w * E * t->stride[2]);
}

/* The same heads in agrad ops (differentiable): t [d0, d1, parts·E] -> [d0, d1, parts, H, D], part w,
 * permuted to [B, H, T, D]. */
static ag_tensor *packed_heads_graph(ag_tensor *t, int parts, int64_t H, bool seq_first, int w) {
    const int64_t E = t->shape[2] / parts;
    const int perm[4] = {seq_first ? 1 : 0, 2, seq_first ? 0 : 1, 3};
    ag_tensor *split = ag_reshape(t, AG_SHAPE(t->shape[0], t->shape[1], parts, H, E / H));
    return ag_permute(ag_select(split, 2, w), perm);
}

/* heads g [B, H, T, D] (differentiable) merged back into [d0, d1, H·D] */
static ag_tensor *merge_graph(ag_tensor *g, bool seq_first) {
    const int back[4] = {seq_first ? 2 : 0, seq_first ? 0 : 2, 1, 3}; /* [B, H, T, D] -> [d0, d1, H, D] */
    ag_tensor *m = ag_permute(g, back);
    return m ? ag_reshape(m, AG_SHAPE(m->shape[0], m->shape[1], m->shape[2] * m->shape[3])) : NULL;
}

/* The row stride of t [..., r, c] as a row-major matrix for sgemm (*ld); false unless its columns are
 * adjacent (a size-1 dim's step counts as 1). */
static bool sgemm_layout(const ag_tensor *t, int64_t *ld) {
    const int n = t->ndim;
    const int64_t r = t->shape[n - 2], c = t->shape[n - 1];
    const int64_t rs = r == 1 ? c : t->stride[n - 2], cs = c == 1 ? 1 : t->stride[n - 1];
    *ld = rs > 1 ? rs : 1;
    return cs == 1 && rs >= c;
}

/* Where item i of t's batch dims (the first nb, c's sizes) starts, in elements from t's first. */
static int64_t item_at(const ag_tensor *t, const ag_tensor *c, int nb, int64_t i) {
    int64_t off = 0;
    for (int d = nb - 1; d >= 0; d--) {
        off += i % c->shape[d] * t->stride[d];
        i /= c->shape[d];
    }
    return off;
}

/* What bmm_into's threads share. */
typedef struct bi_job {
    const ag_tensor *c, *a, *b;
    int nb;
    int64_t items, m, n, k, lda, ldb, ldc;
    bool ta, tb;
    int failed;
} bi_job;

/* Thread t of nt's run of bmm_into's items, each by dnnl_sgemm on the thread. */
static void bmm_items(bi_job *j, int t, int nt) {
    const float *A = (const float *)ag__ptr(j->a), *B = (const float *)ag__ptr(j->b);
    float *C = (float *)ag__ptr(j->c);
    for (int64_t i = ag__share_start(j->items, t, nt); i < ag__share_start(j->items, t + 1, nt); i++)
        if (!ag__sgemm_1t(j->ta, j->tb, j->m, j->n, j->k, A + item_at(j->a, j->c, j->nb, i), j->lda,
                          B + item_at(j->b, j->c, j->nb, i), j->ldb, false, C + item_at(j->c, j->c, j->nb, i), j->ldc)) {
#pragma omp atomic write
            j->failed = 1;
        }
}

/* c = op(a)·op(b) as bmm, for c a view (rows any distance apart: a third of a packed gradient, the
 * heads of a merged output): float32 with every operand's columns adjacent, product by product by
 * dnnl_sgemm (each on one thread, the items split over bmm's threads) written into c in place; else
 * into a contiguous buffer by bmm, then copied into c.  dnnl_sgemm gives the batched primitive's bits
 * item for item at the transformer step's products (test_attention checks the packed op against the
 * views' path bit for bit). */
static ag_status bmm_into(ag_tensor *c, const ag_tensor *a, bool ta, const ag_tensor *b, bool tb) {
    const int n = c->ndim, nb = n - 2;
    const int64_t m = c->shape[n - 2], nn = c->shape[n - 1], k = ta ? a->shape[n - 2] : a->shape[n - 1];
    const int64_t items = ag__numel(nb, c->shape);
    if (items == 0 || m == 0 || nn == 0) return AG_OK;
    int64_t lda, ldb, ldc, each, total; /* multiply-adds per product and in all, saturated: they pick the path */
    if (ag__mul_overflow(m * nn, k, &each)) each = INT64_MAX; /* m·n: at most c's element count */
    if (ag__mul_overflow(each, items, &total)) total = INT64_MAX;
    bool ok = c->dtype == AG_F32 && ag_onednn_enabled() && !ag__autocast_state() &&
              ag__backend != AG_BACKEND_REFERENCE && k > 0 && each > BMM_TINY_MACS && sgemm_layout(a, &lda) &&
              sgemm_layout(b, &ldb) && sgemm_layout(c, &ldc);
    for (int d = 0; ok && d < nb; d++) ok = a->stride[d] != 0 && b->stride[d] != 0;
    if (ok) {
        const int nt = omp_in_parallel() || items < 2 || total < BMM_PAR_MACS ? 1 : omp_get_max_threads();
        bi_job j = {c, a, b, nb, items, m, nn, k, lda, ldb, ldc, ta, tb, 0};
        AG_PARALLEL(nt, { bmm_items(&j, ag__thread, ag__team); });
        if (!j.failed) return AG_OK; /* else every item again through the buffer */
    }
    ag_tensor *t = ag__new_unowned(c->dtype, n, c->shape, false);
    ag_status st = t ? bmm(t, a, ta, b, tb) : AG_ERR_NOMEM;
    if (!st) ag__copy_into(c, t);
    ag_release(t);
    return st;
}

static ag_status packed_backward(ag_tensor *out, ag_tensor *gout);
static ag_status packed_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *packed_jvp(ag_tensor *out, ag_tensor *const *tin);
/* q, k, v the heads of qkv;  y = softmax(q·kᵀ/√D)·v, heads merged;  dqkv's thirds dq = dS·k, dk = dSᵀ·q,
 * dv = Pᵀ·dy */
static const ag_op op_sdpa_packed = {
    .name = "attention_packed", .grad_fn = "ScaledDotProductAttentionBackward0", .backward = packed_backward,
    .saves = AG_SAVES_IN0 | AG_GOUT_ANY_STRIDES,
    .math = "q, k, v [B, H, T, D] the thirds of qkv [T, B, 3E] (or [B, T, 3E]) split into H heads, "
            "P = softmax(q·kᵀ/√D), y = P·v with its heads merged into [T, B, E] (or [B, T, E]);  dv = Pᵀ·dy, "
            "dS = P⊙(dP - rowsum(P⊙dP))/√D with dP = dy·vᵀ (dy's heads read in place), dq = dS·k, dk = dSᵀ·q "
            "written into their thirds of dqkv (P saved)",
    .backward_graph = packed_backward_graph, .jvp = packed_jvp,
    .tangent = "ẏ = Ṗ·v + P·v̇ merged, Ṗ = P⊙(Ṡ - rowsum(P⊙Ṡ)), Ṡ = (q̇·kᵀ + q·k̇ᵀ)/√D, q̇, k̇, v̇ the thirds of qkv̇"};

ag_tensor *ag__sdpa_packed(ag_tensor *qkv, int64_t H, bool seq_first) {
    AG_CHECK_HANDLES(NULL, "attention_packed", qkv);
    if (!qkv) return NULL;
    char s1[AG_SHAPE_STR];
    if (ag__check_float("attention_packed", qkv, NULL)) return NULL;
    if (qkv->ndim != 3 || H <= 0 || qkv->shape[2] % (3 * H))
        return ag__fail_null(AG_ERR_SHAPE, "attention_packed: qkv %s must be [T, B, 3E] or [B, T, 3E] with E a "
                             "multiple of %lld heads", ag__tshape(s1, qkv), (long long)H);
    ag_tensor *h[3] = {NULL, NULL, NULL}, *saved = NULL, *yh = NULL;
    ag_tensor *y = ag__new(qkv->dtype, 3, (int64_t[]){qkv->shape[0], qkv->shape[1], qkv->shape[2] / 3});
    for (int w = 0; w < 3; w++) h[w] = packed_heads(qkv, 3, H, seq_first, w);
    if (y && h[0] && h[1] && h[2] && (yh = packed_heads(y, 1, H, seq_first, 0))) {
        int64_t sshape[4] = {h[0]->shape[0], H, h[0]->shape[2], h[0]->shape[2]};
        sdpa_run(h[0], h[1], h[2], NULL, 0, false, sshape, yh, &saved); /* saved stays NULL on failure */
    }
    for (int w = 0; w < 3; w++) ag_release(h[w]);
    ag_release(yh);
    if (!saved) {
        ag__discard(y);
        return NULL;
    }
    if (ag__needs_grad(&qkv, 1)) {
        y->attr.i[0] = H, y->attr.i[1] = seq_first;
        if (!ag__record_saved(y, &op_sdpa_packed, &qkv, 1, saved)) return NULL;
    } else {
        ag_release(saved);
    }
    return ag__check_finite(y, "attention_packed");
}

/* dqkv: one new gradient of qkv's shape; dv = Pᵀ·dy, dP = dy·vᵀ turned into dS in place, dq = dS·k,
 * dk = dSᵀ·q, each product written into its third (bmm_into) */
static ag_status packed_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    const int64_t H = out->attr.i[0];
    const bool sf = out->attr.i[1];
    ag_tensor *h[3] = {NULL, NULL, NULL}, *g[3] = {NULL, NULL, NULL}, *P = NULL, *dp = NULL;
    ag_tensor *G = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    ag_status st = G ? AG_OK : AG_ERR_NOMEM;
    for (int w = 0; w < 3 && !st; w++)
        if (!(h[w] = packed_heads(x, 3, H, sf, w)) || !(g[w] = packed_heads(G, 3, H, sf, w))) st = AG_ERR_NOMEM;
    ag_tensor *dy = st ? NULL : packed_heads(gout, 1, H, sf, 0);
    if (!st && !dy) st = AG_ERR_NOMEM;
    int64_t sshape[4], sstride[4];
    if (!st) {
        memcpy(sshape, h[0]->shape, sizeof sshape);
        sshape[3] = sshape[2];
        ag__contiguous_strides(4, sshape, sstride);
        if (!(P = ag__new_view_unowned(out->saved, 4, sshape, sstride, 0)) || !(dp = ag__new_unowned(x->dtype, 4, sshape, false)))
            st = AG_ERR_NOMEM;
    }
    if (!st) st = bmm_into(g[2], P, true, dy, false);
    if (!st) st = bmm(dp, dy, false, h[2], true);
    if (!st) {
        const int64_t D = h[0]->shape[3];
        rows_job J = {.sc = dp, .P = P, .scale = D > 0 ? 1.0 / sqrt((double)D) : 1.0, .inv_keep = 1};
        all_rows(&J, false);
        st = bmm_into(g[0], dp, false, h[1], false);
    }
    if (!st) st = bmm_into(g[1], dp, true, h[0], false);
    for (int w = 0; w < 3; w++) ag_release(h[w]), ag_release(g[w]);
    ag_release(dy);
    ag_release(P);
    ag_release(dp);
    if (st) {
        ag_release(G);
        return st;
    }
    return ag__accumulate(x, G);
}

/* dq, dk, dv as sdpa_backward_graph's, from the heads seen through agrad's views of qkv, stacked back
 * into qkv's layout */
static ag_status packed_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0];
    const int64_t H = out->attr.i[0];
    const bool sf = out->attr.i[1];
    ag_tensor *q = packed_heads_graph(x, 3, H, sf, 0), *k = packed_heads_graph(x, 3, H, sf, 1);
    ag_tensor *v = packed_heads_graph(x, 3, H, sf, 2), *dy = packed_heads_graph(gout, 1, H, sf, 0);
    if (!q || !k || !v || !dy) return ag_last_status();
    sdpa_parts s;
    if (sdpa_parts_make(q, k, out->saved, 0, &s)) return ag_last_status();
    ag_tensor *dS = scores_from_probs(&s, ag_matmul(dy, mT(v)));
    ag_tensor *g[3] = {ag_matmul(dS, k), ag_matmul(mT(dS), q), ag_matmul(mT(s.Pd), dy)};
    const int back[4] = {sf ? 2 : 0, sf ? 0 : 2, 1, 3}; /* [B, H, T, D] -> [d0, d1, H, D] */
    for (int w = 0; w < 3; w++) g[w] = ag_permute(g[w], back);
    if (!g[0] || !g[1] || !g[2]) return ag_last_status();
    return (gin[0] = ag_reshape(ag_stack(g, 3, 2), ag_shape_of(x))) ? AG_OK : ag_last_status();
}

/* the tangent from the thirds of qkv's (sdpa_tangent), its heads merged */
static ag_tensor *packed_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *x = out->in[0];
    const int64_t H = out->attr.i[0];
    const bool sf = out->attr.i[1];
    ag_tensor *q = packed_heads_graph(x, 3, H, sf, 0), *k = packed_heads_graph(x, 3, H, sf, 1);
    ag_tensor *v = packed_heads_graph(x, 3, H, sf, 2);
    if (!q || !k || !v || !tin[0]) return NULL;
    sdpa_parts s;
    if (sdpa_parts_make(q, k, out->saved, 0, &s)) return NULL;
    return merge_graph(sdpa_tangent(&s, q, k, v, packed_heads_graph(tin[0], 3, H, sf, 0),
                                    packed_heads_graph(tin[0], 3, H, sf, 1), packed_heads_graph(tin[0], 3, H, sf, 2)),
                       sf);
}

const ag_op *const ag__attention_ops[] = {&op_sdpa, &op_sdpa_packed, NULL};

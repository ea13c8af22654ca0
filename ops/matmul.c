/*
 * matmul.c - torch.matmul (dot, matrix, batched with broadcast batch dims), the
 * fused linear layer y = x·Wᵀ + b, and the products built on matmul: bmm,
 * addmm, baddbmm and outer (torch's, with their stricter shape rules).
 *
 * float32 products read transposed operands in place (strided operands that
 * neither layout fits are copied first) and go, measured on the 2-core machine
 * (µs, 1 thread / 2 threads):
 *   - to a naive loop up to 256 multiply-adds (3x4x5: 0.06 vs 0.22 in sgemm);
 *   - A·B with both plain: dnnl_sgemm (64x512x512: 164/92 vs matmul 174/118);
 *   - a transposed operand (x·Wᵀ, dyᵀ·x): a cached oneDNN matmul primitive
 *     (64x512 · (512x512)ᵀ: 178/115 vs sgemm 208/235; 1024x784 · (256x784)ᵀ:
 *     1943/1044 vs 2154/1060), with the bias of linear fused;
 *   - linear's x·Wᵀ with 9 to 64 rows and out >= 2·rows: the primitive on (W·xᵀ)ᵀ (gemm_swapped);
 *   - linear's dW = dyᵀ·x with 128 to 1024 rows and 64 <= out <= in: dnnl_sgemm reading dyᵀ in
 *     place (512x256x512 903 vs primitive 1028; dw_by_sgemm), and at those sizes any batch item
 *     aᵀ·b with a read transposed in place, matmul's db = aᵀ·dy (64 x 128³ 1661 vs 1905; tn_by_sgemm);
 *   - one row against a transposed operand (x·Wᵀ for one sample) on one thread: dnnl_sgemm on two
 *     rows, the second zeros (1x784·(256x784)ᵀ 9.15 vs 7.04: oneDNN's one-row kernel is the slower;
 *     sgemm_one_row);
 *   - except with at most 8 rows (batch 1 to 8 through a linear layer): dnnl_sgemm
 *     reads the transposed weight in place faster than the primitive, 1 thread, min
 *     of 1500 calls, bias included, loaded machine (sgemm / matmul / inner product):
 *       1x784·(256x784)ᵀ 8.5 / 24.9 / 9.0;  8x784·(256x784)ᵀ 37.0 / 45.1 / 37.1;
 *       1x256·(10x256)ᵀ 0.19 / 0.88 / 0.45; 8x256·(10x256)ᵀ 0.60 / 1.21 / 0.95;
 *       1x256·(256x256)ᵀ 2.7 / 7.9 / 3.0;   8x256·(256x256)ᵀ 11.4 / 14.6 / 11.6;
 *     from 16 rows the primitive wins (16x784·(256x784)ᵀ 73.9 / 72.6 / 75.0,
 *     64x256·(10x256)ᵀ 8.6 / 5.1 / 9.0), and the inner-product primitive never does;
 *   - on one thread below 2^19 multiply-adds: on the 2-core Sapphire Rapids host two
 *     threads win from there (µs, 1 / 2 threads, wall, chrt -f 10, median of 3000:
 *     primitive 32x128·(128x128)ᵀ 8.5 / 6.2, 48x96·(96x96)ᵀ 6.5 / 5.9, 64³ 3.8 / 4.2;
 *     sgemm 8x784·(256x784)ᵀ 28 / 16, 256x10·10x512 19.7 / 11.9); the 2-core AMD machine
 *     of earlier sessions needed 2^21 (96³: 9.1 vs 12.0 on two).  Matrix-vector products
 *     (one row or one column: they read the whole matrix for 2 flops an element) from
 *     2^17 (1x784·(128x784)ᵀ 4.9 / 4.3, 1x784·(256x784)ᵀ 9.6 / 6.7).  With
 *     OMP_WAIT_POLICY=passive each fork wakes the sleeping thread, and both thresholds are
 *     4x higher (8x784·(256x784)ᵀ 27.9 / 26.4, 128³ 26.4 / 24.4);
 *   - a batch of products each below that, together above it: the batch split over
 *     the threads, each product on one; larger products too when the batch divides
 *     evenly over the threads or is long ([32,128,64]x[32,64,128]; batched_gemm);
 *   - the two products of linear's adjoint (dx = dy·W, dW = dyᵀ·x), each from 2^16
 *     multiply-adds: at once, one per thread, below PAR_MACS (measured when it was 2^21:
 *     2 threads, min of 400 on a loaded machine, µs: 256x512·(10x512)ᵀ 64 -> 41,
 *     64x256·(96x256)ᵀ 58 -> 43), and with exactly two threads below 2^27 (one product
 *     per core, each in its own cache, no barrier inside a product: the backward of
 *     bench_steps' mlp_512_b64, the two rules alternated in one process under chrt -f 10,
 *     p10 of 600 steps, 397 -> 369 µs; CONCURRENT_MAX2_MACS).
 * linear followed by ReLU (ag_linear_relu: nn.Sequential's Linear then ReLU, the
 * Transformer's feed-forward) is one op: the ReLU runs in place over the product while
 * it is in cache, and the adjoint masks dy and sums the bias gradient in one pass
 * before the two products (docs/benchmarks.md, "Session 9: fused epilogues"), over dy
 * in place when only the engine holds it ("Session 15: the attention's softmax rows").
 * float64 uses the portable loop.  Under bf16 autocast (core/autocast.h) float32
 * products past the naive loop round both operands to bf16 and run oneDNN's bf16
 * matmul with float32 accumulation and output (docs/mixed-precision.md); linear
 * rounds x and W once in its forward, keeps them in its node, and rounds dy once
 * for both products of its adjoint.
 */
#include <omp.h>
#include <string.h>
#include "core/autocast.h"
#include "core/dnnl_cache.h"
#include "core/iter.h"
#include "core/sum.h"
#include "core/tr8x8.h"
#include "core/parallel.h"
#include "autograd/tape.h"
#include "ops/jvp.h"
#include "ops/matmul.h"
#include "agrad/ops.h"

/* A matrix view: rows x cols, element strides rs (between rows) and cs (between columns). */
typedef struct mat {
    char *p;
    int64_t rows, cols, rs, cs;
} mat;

/* Reference kernel: C[M,N] = A[M,K] · B[K,N] (+ bias[N] on every row) for any
 * strides of A and B; C contiguous. */
#define REF_GEMM(NAME, T)                                                                 \
    static void NAME(mat c, mat a, mat b, const char *bias) {                            \
        T *C = (T *)c.p;                                                                  \
        const T *A = (const T *)a.p, *B = (const T *)b.p;                                 \
        for (int64_t i = 0; i < c.rows; i++) {                                            \
            if (bias) memcpy(C + i * c.cols, bias, sizeof(T) * (size_t)c.cols);          \
            else memset(C + i * c.cols, 0, sizeof(T) * (size_t)c.cols);                  \
        }                                                                                 \
        for (int64_t i = 0; i < a.rows; i++)                                              \
            for (int64_t p = 0; p < a.cols; p++) {                                        \
                const T aip = A[i * a.rs + p * a.cs];                                     \
                const T *brow = B + p * b.rs;                                             \
                T *crow = C + i * c.cols;                                                 \
                for (int64_t j = 0; j < b.cols; j++) crow[j] += aip * brow[j * b.cs];     \
            }                                                                             \
    }
REF_GEMM(gemm_f64, double)
REF_GEMM(gemm_f32_ref, float)

#define TINY_MACS 256                 /* products this small use the naive loop */
/* Products this large use every thread, and matrix-vector products this large; 4x more
 * when waiting threads sleep (OMP_WAIT_POLICY=passive: each fork wakes them). */
#define PAR_MACS ((int64_t)1 << (ag__omp_passive ? 21 : 19))
#define GEMV_PAR_MACS ((int64_t)1 << (ag__omp_passive ? 19 : 17))
#define SGEMM_MAX_ROWS 8              /* transposed operands, this few rows: sgemm, not the primitive */

/* How sgemm can read m in place: 'N' with leading dim rs, or 'T' with leading dim cs. */
static bool sgemm_layout(mat m, char *trans, int64_t *ld) {
    int64_t rs = m.rows == 1 ? (m.cols > 1 ? m.cols * (m.cs ? m.cs : 1) : 1) : m.rs;
    int64_t cs = m.cols == 1 ? 1 : m.cs;
    if (cs == 1 && rs >= (m.cols > 1 ? m.cols : 1)) {
        *trans = 'N';
        *ld = rs;
        return true;
    }
    rs = m.rows == 1 ? 1 : m.rs;
    cs = m.cols == 1 ? (m.rows > 1 ? m.rows : 1) : m.cs;
    if (rs == 1 && cs >= (m.rows > 1 ? m.rows : 1)) {
        *trans = 'T';
        *ld = cs;
        return true;
    }
    return false;
}

/* Copies m into a contiguous buffer in *tmp (caller frees with ag__free). */
static bool pack(mat *m, void **tmp) {
    float *buf = ag__alloc_n(m->rows * m->cols, sizeof(float)); /* rows * cols: at most the operand's count */
    if (!buf) return false;
    for (int64_t i = 0; i < m->rows; i++)
        for (int64_t j = 0; j < m->cols; j++) buf[i * m->cols + j] = ((const float *)m->p)[i * m->rs + j * m->cs];
    *tmp = buf;
    m->p = (char *)buf;
    m->rs = m->cols;
    m->cs = 1;
    return true;
}

/* m converted to bfloat16 in *buf (caller frees with ag__free), row-major, or
 * column-major when m's columns are its contiguous runs; its strides in *rs, *cs. */
static uint16_t *to_bf16(mat m, int64_t *rs, int64_t *cs) {
    uint16_t *buf = ag__alloc_n(m.rows * m.cols, sizeof(uint16_t)); /* at most the operand's count */
    if (!buf) return NULL;
    if (m.rs == 1 && m.cs != 1 && m.rows > 1) { /* column-major: convert mᵀ row-major */
        ag__f32_to_bf16_2d(buf, (const float *)m.p, m.cols, m.rows, m.cs, 1);
        *rs = 1, *cs = m.rows;
    } else {
        ag__f32_to_bf16_2d(buf, (const float *)m.p, m.rows, m.cols, m.rs, m.cs);
        *rs = m.cols, *cs = 1;
    }
    return buf;
}

/* C = A·B (+ bias) under bf16 autocast: A and B rounded to bfloat16, products
 * accumulated in float32 into float32 C by oneDNN's bf16 matmul.  false (nothing
 * recorded) when memory or the primitive is missing: the caller computes it in float32. */
static bool gemm_bf16(mat c, mat a, mat b, const char *bias, int threads) {
    int64_t ars, acs, brs, bcs;
    uint16_t *ha = to_bf16(a, &ars, &acs), *hb = ha ? to_bf16(b, &brs, &bcs) : NULL;
    bool ok = hb && ag__dnnl_matmul_bf16(a.rows, a.cols, b.cols, ha, ars, acs, hb, brs, bcs, (float *)c.p, c.cols,
                                         (const float *)bias, threads);
    ag__free(ha);
    ag__free(hb);
    return ok;
}

/* Multiply-adds of an [m, k]·[k, n] product, saturated (the count only picks a path). */
static int64_t macs_of(int64_t m, int64_t k, int64_t n) {
    int64_t macs;
    if (ag__mul_overflow(m, k, &macs) || ag__mul_overflow(macs, n, &macs)) macs = INT64_MAX;
    return macs;
}

/* Threads an [m, k]·[k, n] product of macs multiply-adds runs on: all from PAR_MACS, or
 * from GEMV_PAR_MACS for a matrix-vector product (m or n 1), which reads the whole matrix
 * for 2 flops an element (at every size with AG_BACKEND_ACCEL); else one; one inside a
 * parallel region. */
static int gemm_threads(int64_t m, int64_t n, int64_t macs) {
    if (omp_in_parallel()) return 1;
    if (ag__backend != AG_BACKEND_ACCEL && macs < ((m == 1 || n == 1) ? GEMV_PAR_MACS : PAR_MACS)) return 1;
    return omp_get_max_threads();
}

/* Whether gemm takes its portable loop for a product of macs multiply-adds over an inner
 * dimension of k: float64, an empty sum, oneDNN off, or a product too small for a library call. */
static bool gemm_loop(ag_dtype dtype, int64_t macs, int64_t k) {
    return dtype == AG_F64 || k == 0 || !ag_onednn_enabled() || (macs <= TINY_MACS && ag__backend == AG_BACKEND_AUTO);
}

/* dnnl_sgemm (row-major, alpha 1) with OpenMP held at `threads` for the call (oneDNN's sgemm takes
 * omp_get_max_threads()) and no dynamic adjustment (core/parallel.h ag__dynamic_off), restored after. */
static dnnl_status_t sgemm_threads(int threads, char ta, char tb, int64_t m, int64_t n, int64_t k, const float *a,
                                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    const int before = omp_get_max_threads(), dynamic = ag__dynamic_off();
    if (threads != before) omp_set_num_threads(threads);
    const dnnl_status_t r = dnnl_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    if (threads != before) omp_set_num_threads(before);
    ag__dynamic_restore(dynamic);
    return r;
}

/* ---- one row against a transposed matrix (x·Wᵀ for one sample) ------------------------------------------
 * dnnl_sgemm('N', 'T') with one row of A takes oneDNN's matrix-vector kernel, which on the Sapphire Rapids
 * host is slower than its two-row GEMM kernel on twice the work (µs, one thread, CPU time, medians of 15
 * x 300 calls, one row / two rows): 1x784·(256x784)ᵀ 9.15 / 7.04, 1x256·(784x256)ᵀ 9.01 / 7.37,
 * 1x512·(512x512)ᵀ 11.68 / 9.20; with B not transposed the one-row call is the faster (8.93 / 9.97).
 * So on one thread the row is multiplied as the first of two (the second zeros) into a scratch, and its
 * row of the result copied out: each output is the same dot product over k whatever the other row holds.
 * bench_steps mlp_infer_b1 (1x784·(256x784)ᵀ, ReLU, 1x256·(10x256)ᵀ), one thread, CPU time, four
 * pairs: 9.6 -> 7.9 µs.  Not on two threads (the one-row product from 2^17 multiply-adds): oneDNN alone
 * the two-row call was the faster there too (wall, chrt -f 10, 784x256 6.65 -> 5.71 µs), but the step
 * itself was slower in 5 of 5 pairs (wall, chrt -f 10, load 16: 8.8-9.9 -> 9.5-11.6 µs). */
#define ONE_ROW_MIN_MACS ((int64_t)1 << 14) /* below, a call costs about the same either way */

/* Whether c = a·b, a one row and b transposed ('T'), runs as two rows (sgemm_one_row) on one thread. */
static bool one_row_fits(mat a, char tb, int64_t n) {
    return a.rows == 1 && tb == 'T' && a.cols * n >= ONE_ROW_MIN_MACS;
}

/* c = a·b (+ bias) for a one row and b transposed with leading dim ldb, as the first row of a two-row
 * dnnl_sgemm on one thread; false when the scratch is missing or sgemm fails (nothing written to c). */
static bool sgemm_one_row(mat a, mat b, int64_t ldb, mat c, const char *bias) {
    const int64_t k = a.cols, n = c.cols;
    float *two = ag__alloc_n(2 * (k + n), sizeof(float)); /* A's two rows, then C's */
    if (!two) return false;
    float *c2 = two + 2 * k;
    for (int64_t j = 0; j < k; j++) two[j] = *(const float *)(a.p + j * a.cs * 4);
    memset(two + k, 0, sizeof(float) * (size_t)k);
    if (bias) {
        memcpy(c2, bias, sizeof(float) * (size_t)n);
        memcpy(c2 + n, bias, sizeof(float) * (size_t)n);
    }
    const dnnl_status_t r = sgemm_threads(1, 'N', 'T', 2, n, k, two, k, (const float *)b.p, ldb, bias ? 1.0f : 0.0f, c2, n);
    if (r == dnnl_success) memcpy(c.p, c2, sizeof(float) * (size_t)n);
    ag__free(two);
    return r == dnnl_success;
}

#define DW_SGEMM_MIN_ROWS 128 /* dw_by_sgemm's fewest rows */

/* Whether linear's dW = dyᵀ·x ([out, rows]·[rows, in]) runs as dnnl_sgemm('T', 'N') rather than the
 * matmul primitive: from 128 to 1024 rows with 64 <= out <= in.  There sgemm reads dyᵀ in place 5-20%
 * faster than brgemm, whose kernel wants A's rows contiguous and copies dyᵀ into blocks (µs, one
 * thread, CPU time, oneDNN alone, medians of 5-9 alternated rounds, load 13-20, out x rows x in,
 * sgemm / primitive): 512x256x512 903 / 1028, 512x256x784 1444 / 1665, 1024x256x1024 4363 / 4923,
 * 256x1024x784 2834 / 3211, 256x1024x1024 4063 / 4255, 256x256x1024 1046 / 1137, 512x128x512
 * 493 / 546, 128³ 25.6 / 30.9; outside it the primitive is as fast or faster: 512x64x512 218 / 220,
 * 512x32x512 156 / 108, 1024x64x1024 922 / 883, 512x4096x512 21068 / 17288, 256x2048x256 2785 /
 * 2484, 1024x1024x256 5261 / 4282, 1024x256x256 1415 / 1342, 10x1024x256 42.9 / 34.6.  Session 15
 * took sgemm from 64 rows on the Sapphire Rapids host (mlp_512_b64's backward 730 -> 698 µs, one
 * thread); on the AMD Zen 5 host (session 17) the primitive is the faster at 64 rows: oneDNN alone,
 * 512x64x512, 15 alternated rounds, one thread CPU time 179 / 188 µs (primitive / sgemm), two threads
 * wall (chrt -f 10) 100 / 114, even at 128 rows (369 / 374), sgemm ahead from 256 (780 / 765); in
 * bench_step_parts step/mlp_512_b64, rule 64 -> 128 rows alternated six pairs, backward 332 -> 301
 * µs on two threads (wall, chrt -f 10, lower in 6 of 6), even on one (642 / 638, CPU time).  So sgemm
 * from 128 rows again; below, the primitive (32 rows went either way on SPR: linear fwd+bwd [32,
 * 512]·[512, 512]ᵀ 357 -> 371 µs in 4 pairs, against 512x32x512 above). */
static bool dw_by_sgemm(int64_t rows, int64_t out, int64_t in) {
    return rows >= DW_SGEMM_MIN_ROWS && rows <= 1024 && out >= 64 && out <= in;
}

/* C = A·B (+ bias, n contiguous elements, on every row); with sgemm, dnnl_sgemm even where a
 * transposed operand would take the matmul primitive (linear's dW, dw_by_sgemm).  Returns AG_OK or
 * AG_ERR_NOMEM / AG_ERR_BACKEND. */
static ag_status gemm_by(ag_dtype dtype, mat c, mat a, mat b, const char *bias, bool sgemm) {
    if (c.rows == 0 || c.cols == 0) return AG_OK;
    const int64_t macs = macs_of(a.rows, a.cols, b.cols);
    if (gemm_loop(dtype, macs, a.cols)) {
        if (dtype == AG_F64) gemm_f64(c, a, b, bias);
        else gemm_f32_ref(c, a, b, bias);
        return AG_OK;
    }
    if (ag__autocast == AG_AUTOCAST_BF16 && gemm_bf16(c, a, b, bias, gemm_threads(a.rows, b.cols, macs))) /* float32 here */
        return AG_OK;
    char ta = 'N', tb = 'N';
    int64_t lda = 1, ldb = 1;
    void *tmp_a = NULL, *tmp_b = NULL;
    ag_status st = AG_OK;
    if (!sgemm_layout(a, &ta, &lda) && !(pack(&a, &tmp_a) && sgemm_layout(a, &ta, &lda))) st = AG_ERR_NOMEM;
    if (!st && !sgemm_layout(b, &tb, &ldb) && !(pack(&b, &tmp_b) && sgemm_layout(b, &tb, &ldb))) st = AG_ERR_NOMEM;
    const int threads = gemm_threads(a.rows, b.cols, macs);
    /* not for one column (a matrix-vector product: matmul [256, 256]·[256]'s db = aᵀ·dy took 20 us in the
     * primitive, 1 in sgemm's matrix-vector kernel; session 20) */
    bool primitive = ag__backend == AG_BACKEND_ACCEL ||
                     (ag__backend == AG_BACKEND_AUTO && (ta == 'T' || tb == 'T') && a.rows > SGEMM_MAX_ROWS && b.cols > 1 && !sgemm);
    if (!st && primitive &&
        ag__dnnl_matmul(a.rows, a.cols, b.cols, (const float *)a.p, ta == 'N' ? lda : 1, ta == 'N' ? 1 : lda,
                        (const float *)b.p, tb == 'N' ? ldb : 1, tb == 'N' ? 1 : ldb, (float *)c.p, c.cols,
                        (const float *)bias, threads))
        goto done;
    if (!st && threads == 1 && one_row_fits(a, tb, b.cols)) {
        if (sgemm_one_row(a, b, ldb, c, bias)) goto done;
        /* no memory for the two rows: the one-row call below */
    }
    if (!st && bias)
        for (int64_t i = 0; i < c.rows; i++) memcpy(c.p + i * c.cols * 4, bias, 4 * (size_t)c.cols);
    if (!st) {
        const dnnl_status_t r = sgemm_threads(threads, ta, tb, a.rows, b.cols, a.cols, (const float *)a.p, lda,
                                              (const float *)b.p, ldb, bias ? 1.0f : 0.0f, (float *)c.p, c.cols);
        if (r != dnnl_success)
            st = ag__fail(AG_ERR_BACKEND, "matmul: oneDNN sgemm failed for [%lld, %lld] x [%lld, %lld]",
                          (long long)a.rows, (long long)a.cols, (long long)b.rows, (long long)b.cols);
    }
done:
    ag__free(tmp_a);
    ag__free(tmp_b);
    return st;
}

/* C = A·B (+ bias) by the path gemm_by picks for the layouts. */
static ag_status gemm(ag_dtype dtype, mat c, mat a, mat b, const char *bias) { return gemm_by(dtype, c, a, b, bias, false); }

/* y = relu(y) over n contiguous values, as ops/unary.c's relu (x <= 0 ? 0 : x: NaN stays). */
#define RELU_PASS(SUF, T)                                                                     \
    AG_VEC_CLONES static void relu_pass_##SUF(T *y, int64_t n) {                              \
        for (int64_t i = 0; i < n; i++) y[i] = y[i] <= 0 ? 0 : y[i];                          \
    }
RELU_PASS(f32, float)
RELU_PASS(f64, double)

/* Values [i0, i1) of gemm_act's ReLU pass over p. */
static void relu_part(ag_dtype dtype, char *p, int64_t i0, int64_t i1) {
    if (dtype == AG_F64) relu_pass_f64((double *)p + i0, i1 - i0);
    else relu_pass_f32((float *)p + i0, i1 - i0);
}

/* ---- x·Wᵀ for a small batch, as (W·xᵀ)ᵀ ----------------------------------------------------------------
 * With 9 to 64 rows of x and at least twice as many outputs, the matmul primitive computes Cᵀ = W·xᵀ
 * into a scratch [out, rows] and one pass writes C = Cᵀᵀ (+ bias) (relu'd): oneDNN's brgemm copies its
 * B operand into blocks on every call, and B is then xᵀ (rows·in values) instead of Wᵀ (out·in), and
 * its kernel vectorises along the rows.  The same bits as the primitive on x·Wᵀ + b (each element is
 * the same sum over k, then + b rounded once, as oneDNN's bias; test_gemm_paths checks it).  Linear
 * (+ ReLU) forward, oneDNN alone, the two forms alternated, medians of 400-1000 (µs, one thread CPU
 * time, load 21; 2 threads wall under chrt -f 10): [64, 512]·[512, 512]ᵀ 301 -> 271, 2 threads 191
 * -> 178; [32, 512]·[512, 512]ᵀ 219 -> 188; [16, 784]·[256, 784]ᵀ 99 -> 70; [64, 1024]·[1024,
 * 1024]ᵀ 1501 -> 1233; [64, 784]·[256, 784]ᵀ 290 -> 261; even at [64, 256]·[10, 256]ᵀ 7.9 -> 7.8,
 * 64³ 12.5 -> 12.9, [96, 512]·[512, 512]ᵀ 583 -> 578; slower from 128 rows up ([256, 512]·[512,
 * 512]ᵀ 1441 -> 1594). */
#define SWAP_MAX_ROWS 64
#define SWAP_TILE 16 /* the transposing pass's tiles: 16 x 16 values */

/* Whether c = a·b (+ bias), a = x [rows, in] with contiguous rows and b = Wᵀ (W's rows contiguous),
 * runs as (W·xᵀ)ᵀ: float32, oneDNN's products on the automatic path, no bf16 autocast, 9 to
 * SWAP_MAX_ROWS rows, out >= 2·rows. */
static bool swap_fits(ag_dtype dtype, mat a, mat b) {
    return dtype == AG_F32 && ag__backend == AG_BACKEND_AUTO && ag__autocast != AG_AUTOCAST_BF16 &&
           !gemm_loop(dtype, macs_of(a.rows, a.cols, b.cols), a.cols) && a.rows > SGEMM_MAX_ROWS &&
           a.rows <= SWAP_MAX_ROWS && b.cols >= 2 * a.rows && a.cs == 1 && a.rs >= a.cols && b.rs == 1 &&
           b.cs >= b.rows;
}

/* Output tiles [o0, o1) (of SWAP_TILE columns) of c[n][o] = t[o][n] (+ bias[o]), relu'd with relu
 * (x <= 0 ? 0 : x, NaN kept, as ops/unary.c). */
static void swap_tiles(float *c, int64_t ldc, const float *t, int64_t rows, int64_t out, const float *bias, bool relu,
                       int64_t o0, int64_t o1) {
    for (int64_t ob = o0; ob < o1; ob += SWAP_TILE)
        for (int64_t nb = 0; nb < rows; nb += SWAP_TILE) {
            const int64_t oe = ob + SWAP_TILE < out ? ob + SWAP_TILE : out;
            const int64_t ne = nb + SWAP_TILE < rows ? nb + SWAP_TILE : rows;
            for (int64_t n = nb; n < ne; n++)
                for (int64_t o = ob; o < oe; o++) {
                    float v = bias ? t[o * rows + n] + bias[o] : t[o * rows + n];
                    c[n * ldc + o] = relu && v <= 0 ? 0 : v;
                }
        }
}

#ifdef AG_X86_INTRINSICS
/* swap_tiles over the outputs [o0, o1) ((o1 - o0) a multiple of 8) on AVX2: bands of 16 outputs (a
 * 64-byte line of each row of c), 8 rows at a time, transposed from t in 8 x 8 blocks through
 * registers (tr8x8_rows), + bias and the ReLU there before the stores (v <= 0 ? 0 : v as a compare
 * and a mask: NaN fails it and is kept), the rows past the last whole block one by one: the same
 * bits as swap_tiles without its per-element gathers.  (Bands of 8 were slower than swap_tiles: c's
 * rows are 2 KiB apart, so half-line stores to 64 rows missed L1 twice a line; a bias and ReLU pass
 * after the stores, with data-dependent branches, 6x slower.)  Linear + ReLU forward, one thread, CPU
 * time, medians of 41 x 200 calls, old and new alternated (µs): [64, 512] -> 512 226-227 -> 219-224,
 * [32, 512] -> 512 114-118 -> 111-113, [16, 784] -> 256 43.2-43.7 -> 42.4-43.0. */
__attribute__((target("avx2"))) static void swap_bands_avx2(float *c, int64_t ldc, const float *t, int64_t rows,
                                                            const float *bias, bool relu, int64_t o0, int64_t o1) {
    const int64_t r8 = rows / 8 * 8;
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t ob = o0; ob < o1; ob += 16) {
        const int bands = ob + 16 <= o1 ? 2 : 1; /* two side by side: whole 64-byte lines of c */
        for (int64_t nb = 0; nb < r8; nb += 8)
            for (int h = 0; h < bands; h++) {
                const __m256 b = bias ? _mm256_loadu_ps(bias + ob + 8 * h) : zero;
                __m256 r[8];
                tr8x8_rows((const char *)(t + (ob + 8 * h) * rows + nb), rows * 4, r);
                for (int k = 0; k < 8; k++) {
                    __m256 v = bias ? _mm256_add_ps(r[k], b) : r[k];
                    if (relu) v = _mm256_andnot_ps(_mm256_cmp_ps(v, zero, _CMP_LE_OQ), v);
                    _mm256_storeu_ps(c + (nb + k) * ldc + ob + 8 * h, v);
                }
            }
        for (int64_t n = r8; n < rows; n++) /* the last rows, as swap_tiles */
            for (int64_t o = ob; o < ob + 8 * bands; o++) {
                float v = bias ? t[o * rows + n] + bias[o] : t[o * rows + n];
                c[n * ldc + o] = relu && v <= 0 ? 0 : v;
            }
    }
}
#endif

/* swap_tiles over the outputs [o0, o1), in bands of 8 on AVX2 where the CPU has it. */
static void swap_part(float *c, int64_t ldc, const float *t, int64_t rows, int64_t out, const float *bias, bool relu,
                      int64_t o0, int64_t o1) {
#ifdef AG_X86_INTRINSICS
    if (AG_VEC_WIDE()) {
        const int64_t o8 = o0 + (o1 - o0) / 8 * 8;
        swap_bands_avx2(c, ldc, t, rows, bias, relu, o0, o8);
        o0 = o8;
    }
#endif
    swap_tiles(c, ldc, t, rows, out, bias, relu, o0, o1);
}

/* c = a·b (+ bias) (relu'd) as (W·xᵀ)ᵀ where swap_fits; false (nothing written) when memory or the
 * primitive is missing: the caller takes the usual path. */
static bool gemm_swapped(mat c, mat a, mat b, const float *bias, bool relu) {
    const int64_t rows = a.rows, in = a.cols, out = b.cols;
    float *t = ag__alloc_n(rows * out, sizeof(float)); /* c's count */
    const int threads = gemm_threads(rows, out, macs_of(rows, in, out));
    if (!t || !ag__dnnl_matmul(out, in, rows, (const float *)b.p, b.cs, 1, (const float *)a.p, 1, a.rs, t, rows, NULL,
                               threads)) {
        ag__free(t);
        return false;
    }
    const int64_t tiles = (out + SWAP_TILE - 1) / SWAP_TILE;
    if (threads <= 1) { /* no parallel region at all: even a one-thread team costs ~1 µs */
        swap_part((float *)c.p, c.rs, t, rows, out, bias, relu, 0, out);
    } else {
#pragma omp parallel num_threads(threads)
        {
            const int k = omp_get_thread_num(), used = omp_get_num_threads();
            const int64_t o0 = ag__share_start(tiles, k, used) * SWAP_TILE, o1 = ag__share_start(tiles, k + 1, used) * SWAP_TILE;
            swap_part((float *)c.p, c.rs, t, rows, out, bias, relu, o0, o1 < out ? o1 : out);
        }
    }
    ag__free(t);
    return true;
}

/* C = A·B (+ bias), then with relu C = relu(C) in place, while C is in cache where it fits (split over
 * the threads as ops/unary.c splits relu); for a small batch as (W·xᵀ)ᵀ with the bias and relu in its
 * transposing pass (gemm_swapped).  Not the matmul primitive's relu post-op: oneDNN's relu with
 * alpha 0 is max(x, 0), which turns NaN into 0 where relu keeps it, and with alpha != 0 it multiplies
 * every value and makes denormals ([64, 32]·[48, 32]ᵀ: 3 -> 25 µs).  AG_OK or gemm's failure. */
static ag_status gemm_act(ag_dtype dtype, mat c, mat a, mat b, const char *bias, bool relu) {
    if (c.rows > 0 && c.cols > 0 && swap_fits(dtype, a, b) && gemm_swapped(c, a, b, (const float *)bias, relu))
        return AG_OK;
    ag_status st = gemm(dtype, c, a, b, bias);
    const int64_t n = c.rows * c.cols;
    const int nt = relu && !st ? ag__threads_for(n) : 0;
    if (nt == 1) { /* no parallel region at all: even a one-thread team costs ~1 µs */
        relu_part(dtype, c.p, 0, n);
    } else if (nt > 1) {
#pragma omp parallel num_threads(nt)
        relu_part(dtype, c.p, ag__share_start(n, omp_get_thread_num(), omp_get_num_threads()),
                  ag__share_start(n, omp_get_thread_num() + 1, omp_get_num_threads()));
    }
    return st;
}

/* Products from which two independent ones (an adjoint's dx and dW) run at once: below it
 * the fork costs more than the second core saves.  With exactly two threads they do below
 * CONCURRENT_MAX2_MACS, where it was measured to gain (2 threads, chrt, backward of an MLP
 * step, in turn -> at once, µs: 64x512·(512x512)ᵀ 397 -> 369; 256x512·(512x512)ᵀ 1383 ->
 * 1393 with the SGD after it 110 -> 75); at 2^28 it moved within the runs' ±3% spread either
 * way (256x1024·(1024x1024)ᵀ 5727 -> 5555, 1024x256·(1024x256)ᵀ 5719 -> 5842), one
 * product's operands then outgrowing a core's cache, so those stay in turn. */
#define CONCURRENT_MIN_MACS ((int64_t)1 << 16)
#define CONCURRENT_MAX2_MACS ((int64_t)1 << 27)

/* Whether two independent products of macs0 and macs1 multiply-adds run at once, one per
 * thread (each then gives the bits it gives alone on one thread): each from
 * CONCURRENT_MIN_MACS, and either below PAR_MACS, where each would run on one thread
 * anyway, or below CONCURRENT_MAX2_MACS when there are exactly two threads, where one
 * product per core beats both in turn on both cores (no barrier inside a product, each
 * core's operands in its own cache).  With more threads the large ones run in turn, each
 * on all of them. */
static bool concurrent(int64_t macs0, int64_t macs1) {
    if (ag__backend != AG_BACKEND_AUTO || macs0 < CONCURRENT_MIN_MACS || macs1 < CONCURRENT_MIN_MACS ||
        omp_in_parallel())
        return false;
    const int threads = omp_get_max_threads();
    if (macs0 < PAR_MACS && macs1 < PAR_MACS) return threads >= 2;
    return threads == 2 && macs0 < CONCURRENT_MAX2_MACS && macs1 < CONCURRENT_MAX2_MACS;
}

/* One product c = a·b of an adjoint; sgemm as gemm_by's. */
typedef struct product {
    mat c, a, b;
    bool sgemm;
} product;

/* The n (1 or 2) products p of one adjoint with gemm: two at once, one per thread, where
 * concurrent() allows (each on one thread, the bits of one after the other), else in turn.
 * Returns AG_OK or the first failure (its message on this thread). */
static ag_status run_products(ag_dtype dtype, const product *p, int n) {
    if (n == 2 && dtype == AG_F32 && concurrent(macs_of(p[0].a.rows, p[0].a.cols, p[0].b.cols),
                                                macs_of(p[1].a.rows, p[1].a.cols, p[1].b.cols))) {
        ag_status st[2] = {AG_OK, AG_OK};
#pragma omp parallel for num_threads(2) schedule(static, 1)
        for (int i = 0; i < 2; i++) st[i] = gemm_by(dtype, p[i].c, p[i].a, p[i].b, NULL, p[i].sgemm);
        if (!st[0] && !st[1]) return AG_OK;
        /* A failure on the worker left its message on that thread: redo both here for it. */
    }
    for (int i = 0; i < n; i++) {
        ag_status st = gemm_by(dtype, p[i].c, p[i].a, p[i].b, NULL, p[i].sgemm);
        if (st) return st;
    }
    return AG_OK;
}

/* ---- linear's adjoint by halves of W's rows on two threads ------------------------------------------
 * With the products at once (run_products) the thread computing dx = dy·W reads all of W, the other
 * writes all of dW, and the forward's threaded product has read each half of W on its own thread, so
 * after the backward half of W is cached on both cores and dW on one.  The optimizer's update, split
 * into halves over the threads as the forward's product is, then writes lines the other core holds.
 * The AMD Zen 5 host's two vCPUs sometimes share no cache (the host moved them during session 18:
 * then a line the other core wrote reads at ~26 GB/s against ~90 from one's own or a shared cache):
 * SGD over mlp_512_b64's two 512 x 512 weights took 105-122 µs in the step on two threads against
 * 32 µs alone, one thread spending ~80 µs on the half of W2 both cores held (wall, chrt -f 10).
 * So where the products would run at once on exactly two threads and are each at least PAR_MACS, each
 * thread takes the rows [o0, o1) of W (its half): dW's rows, dyᵀ[o0:o1]·x, and dx's partial sum over
 * them, P = dy[:, o0:o1]·W[o0:o1]; then dx = P0 + P1, each thread adding half of it.  No cache line of
 * W or dW is then touched by both cores in the step.  dW is the same sums over the batch rows (the
 * bits of the whole product: test_gemm_paths); dx sums its out terms in two halves then adds them
 * (within the same error bound, γ_out·Σ|dy||W|, and on this host the bits of one thread at out = 512,
 * where oneDNN's sgemm blocks the sum at 256 itself, other last bits at out = 331: test_gemm_paths
 * checks the bound and the bits of P0 + P1).  Two threads, wall, chrt -f 10, load 12-17, the vCPUs
 * apart: SGD 107 -> 52 µs, dx and dW 190 -> 188 (regions timed by an LD_PRELOAD shim), step 706 ->
 * 635; bench_steps mlp_512_b64 664 -> 610 µs (6 pairs), a 128-row step (512 -> 512 -> 512) 1171-1221
 * -> 1026-1159 (3 pairs); with a shared cache, 503 -> 507 (dx and dW 160 -> 167, SGD 25 -> 23).  At
 * 256 rows the half products' ~5% lower rate costs more: mlp_512_b256 2099 -> 2026 µs but
 * mlp_bn_dropout's two 512 x 512 adjoints 659 -> 692 each (AdamW 250 -> 191, step 4341 -> 4367), vCPUs
 * apart; hence at most HALVES_MAX_ROWS rows (docs/benchmarks.md "Session 18").  Session 19 (bn19)
 * tried 256: mlp_bn_dropout's AdamW 252 -> 198 µs and the step 2-3% faster with the vCPUs apart, even
 * with them together, and 1-4% slower in plain ReLU MLP steps of 192-256 rows: kept at 128. */
#define HALVES_MIN_OUT 32   /* W's fewest rows for the halves: at least 16 a half */
#define HALVES_MAX_ROWS 128 /* the most batch rows: the halves' cost grows with them, their gain does not */

/* Whether linear's dx and dW of dtype (products dx [rows, out]·[out, in] and dW [out, rows]·[rows, in],
 * macs each) run by halves of W's rows (linear_halves): float32 through oneDNN, two threads, the
 * products in concurrent()'s range and each large enough to run on both threads alone (PAR_MACS), W
 * of at least AG_PAR_MIN_ELEMS elements (half a MiB: below, what its lines cost to move between
 * cores is small against the half products' ~5% lower rate and dx's sum). */
static bool halves_fit(ag_dtype dtype, int64_t rows, int64_t out, int64_t in) {
    const int64_t macs = macs_of(rows, out, in);
    return dtype == AG_F32 && ag__autocast != AG_AUTOCAST_BF16 && ag_onednn_enabled() && rows <= HALVES_MAX_ROWS &&
           out >= HALVES_MIN_OUT && out * in >= AG_PAR_MIN_ELEMS && macs >= PAR_MACS && omp_get_max_threads() == 2 &&
           concurrent(macs, macs);
}

/* Half h (0 or 1) of linear_halves: dW's rows [o0, o1) into gw, and dx's partial sum over them into c. */
static ag_status linear_half(int h, mat dy, mat w, mat gw, mat x, bool sgemm, char *c) {
    const int64_t o0 = ag__share_start(w.rows, h, 2), o1 = ag__share_start(w.rows, h + 1, 2);
    const mat a = {dy.p + o0 * dy.cs * 4, dy.rows, o1 - o0, dy.rs, dy.cs}; /* dy[:, o0:o1] */
    const mat b = {w.p + o0 * w.rs * 4, o1 - o0, w.cols, w.rs, w.cs};       /* W[o0:o1] */
    const mat at = {a.p, a.cols, a.rows, a.cs, a.rs};                        /* dy[:, o0:o1]ᵀ */
    const mat gc = {gw.p + o0 * gw.cols * 4, o1 - o0, gw.cols, gw.cols, 1};  /* dW[o0:o1] */
    ag_status st = gemm_by(AG_F32, (mat){c, dy.rows, w.cols, w.cols, 1}, a, b, NULL, false);
    return st ? st : gemm_by(AG_F32, gc, at, x, NULL, sgemm);
}

/* y[i] += b[i] over [i0, i1): dx = P0 + P1. */
AG_VEC_CLONES static void add_part(float *restrict y, const float *restrict b, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) y[i] += b[i];
}

/* dx = dy·W into gx and dW = dyᵀ·x into gw (both [.., ..] contiguous float32) by halves of W's rows,
 * half h on thread h of two (both on one thread when the team has one: the same bits); sgemm as
 * gemm_by's for dW.  AG_OK, AG_ERR_NOMEM, or gemm_by's failure (then nothing is promised in gx and gw,
 * the message left on the thread that failed: the caller redoes the products in turn for it). */
static ag_status linear_halves(mat gx, mat dy, mat w, mat gw, mat x, bool sgemm) {
    float *p1 = ag__alloc_n(gx.rows * gx.cols, sizeof(float)); /* the second half's partial dx */
    if (!p1) return AG_ERR_NOMEM;
    ag_status st[2] = {AG_OK, AG_OK};
    const int64_t n = gx.rows * gx.cols;
#pragma omp parallel num_threads(2)
    {
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        for (int h = t; h < 2; h += used) st[h] = linear_half(h, dy, w, gw, x, sgemm, h ? (char *)p1 : gx.p);
#pragma omp barrier
        if (!st[0] && !st[1]) /* whole 64-byte lines a thread */
            add_part((float *)gx.p, p1, ag__share_start(n / 16, t, used) * 16,
                     t + 1 == used ? n : ag__share_start(n / 16, t + 1, used) * 16);
    }
    ag__free(p1);
    return st[0] ? st[0] : st[1];
}

/* ---- a lone dW by halves of its rows, dy's halves packed -------------------------------------------
 * linear's dW = dyᵀ·x with no dx (the first layer's, x needing no gradient), on exactly two threads where
 * linear_halves would split the adjoint and dW takes the matmul primitive (fewer than DW_SGEMM_MIN_ROWS
 * rows): thread h copies dy[:, o0:o1] into a dense [rows, o1 - o0] block and computes dW's rows [o0, o1)
 * from it on one thread.  oneDNN 2.6 runs the primitive on both threads at 80-83% of the 1024³ sgemm rate
 * at mlp_512_b64's [512, 64]·[64, 512] (102-104 µs, wall, chrt -f 10; 158 on one thread), and takes brgemm
 * for a transposed A only when A's leading dim is its row count (dy's half read in place: gemm:jit, 99-101
 * µs a half on one thread; packed 80-82 with the copy); the two packed halves at once 92-94 µs.  In the
 * step, bench_step_parts step/mlp_512_b64, two threads, wall, chrt -f 10, main and this path alternated,
 * eight pairs (load 9-10): backward median 301.0 -> 290.9 µs (lower in 7 of 8), step 594.9 -> 590.7 (6 of
 * 8, within the step's noise).  dW's rows are the same
 * sums over the batch rows in order (test_gemm_paths: the bits of one thread's whole product).  (The same
 * copy for linear2's halves, where dx runs beside dW, made the step no faster: docs/benchmarks.md,
 * "Session 20".) */

/* Whether linear's lone dW ([out, rows]·[rows, in], dW's path sgemm as dw_by_sgemm says) runs by halves. */
static bool dw_halves_fit(ag_dtype dtype, int64_t rows, int64_t out, int64_t in, bool sgemm) {
    return !sgemm && halves_fit(dtype, rows, out, in);
}

/* dW = dyᵀ·x into gw ([out, in] contiguous float32; dy [rows, out] with contiguous rows, x [rows, in])
 * by halves of dW's rows on two threads (both on one when the team has one: the same bits), each from
 * its half of dy copied dense.  AG_OK, AG_ERR_NOMEM, or gemm_by's failure (its message on the thread
 * that failed: the caller redoes the product for it). */
static ag_status dw_halves(mat gw, mat dy, mat x) {
    float *pk = ag__alloc_n(dy.rows * dy.cols, sizeof(float)); /* dy's halves, each [rows, o1 - o0] */
    if (!pk) return AG_ERR_NOMEM;
    ag_status st[2] = {AG_OK, AG_OK};
#pragma omp parallel num_threads(2)
    for (int h = omp_get_thread_num(); h < 2; h += omp_get_num_threads()) {
        const int64_t o0 = ag__share_start(gw.rows, h, 2), o1 = ag__share_start(gw.rows, h + 1, 2), n = o1 - o0;
        float *ph = pk + dy.rows * o0;
        for (int64_t i = 0; i < dy.rows; i++)
            memcpy(ph + i * n, dy.p + (i * dy.rs + o0) * 4, sizeof(float) * (size_t)n);
        const mat at = {(char *)ph, n, dy.rows, 1, n};                        /* dy[:, o0:o1]ᵀ, dense */
        const mat gc = {gw.p + o0 * gw.cols * 4, n, gw.cols, gw.cols, 1};   /* dW[o0:o1] */
        st[h] = gemm_by(AG_F32, gc, at, x, NULL, false);
    }
    ag__free(pk);
    return st[0] ? st[0] : st[1];
}

/* The last two dims of t as a matrix at element offset off (transposed if tr). */
static mat mat_of(const ag_tensor *t, int64_t off, bool tr) {
    int n = t->ndim;
    mat m = {ag__ptr(t) + off * (int64_t)ag_dtype_size(t->dtype), t->shape[n - 2], t->shape[n - 1], t->stride[n - 2],
             t->stride[n - 1]};
    if (tr) m = (mat){m.p, m.cols, m.rows, m.cs, m.rs};
    return m;
}

/* Whether a batch item c = a·b with a read transposed in place (its columns contiguous: sgemm's 'T')
 * and b plain ('N') runs as dnnl_sgemm rather than the matmul primitive, at dw_by_sgemm's sizes (k
 * rows of both, c [m, n]): matmul's db = aᵀ·dy, as linear's dW.  einsum_bmm's [64, 128, 128] adjoint
 * (64 products 128³, one thread, CPU time, medians of 21, three rounds, µs): sgemm('T', 'N') 1661 /
 * 1641 / 1698 against the primitive's 1905 / 1915 / 2015; dA = dy·bᵀ ('N', 'T') stays the primitive,
 * the faster there (1556 / 1648 / 1771 against sgemm's 2240 / 1847 / 1870).  The primitive gave sgemm's
 * bits item for item at these sizes (test_gemm_paths). */
static bool tn_by_sgemm(mat a, mat b) {
    char ta, tb;
    int64_t ld;
    return sgemm_layout(a, &ta, &ld) && ta == 'T' && sgemm_layout(b, &tb, &ld) && tb == 'N' &&
           dw_by_sgemm(a.cols, a.rows, b.cols);
}

/* Product bi of c[batch..., n, m] = op(a)·op(b) (bi counts c's batch dims row-major;
 * a and b broadcast over them). */
static ag_status batch_item(ag_tensor *c, const ag_tensor *a, bool ta, const ag_tensor *b, bool tb, int64_t bi) {
    int nb = c->ndim - 2;
    int64_t oa = 0, ob = 0, rest = bi;
    for (int d = nb - 1; d >= 0; d--) { /* bi's index along each batch dim, innermost first */
        int64_t i = rest % c->shape[d];
        rest /= c->shape[d];
        int da = d - (c->ndim - a->ndim), db = d - (c->ndim - b->ndim);
        if (da >= 0 && a->shape[da] != 1) oa += i * a->stride[da];
        if (db >= 0 && b->shape[db] != 1) ob += i * b->stride[db];
    }
    int64_t cstep = c->shape[nb] * c->shape[nb + 1];
    mat mc = {ag__ptr(c) + bi * cstep * (int64_t)ag_dtype_size(c->dtype), c->shape[nb], c->shape[nb + 1],
              c->shape[nb + 1], 1};
    const mat ma = mat_of(a, oa, ta), mb = mat_of(b, ob, tb);
    return gemm_by(c->dtype, mc, ma, mb, NULL, tn_by_sgemm(ma, mb));
}

/* c[batch..., n, m] = op(a)·op(b) over c's batch dims; a and b broadcast over them.
 * ta/tb transpose the last two dims of a/b.  Products too small to thread but together
 * above PAR_MACS run one per thread at a time (each on one thread, so the result is
 * the one a single thread gives). */
static ag_status batched_gemm(ag_tensor *c, const ag_tensor *a, bool ta, const ag_tensor *b, bool tb) {
    int nb = c->ndim - 2;
    if (ag__numel(c->ndim, c->shape) == 0) return AG_OK; /* no element: no batch is walked (there may be 2^60) */
    int64_t k = ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
    if (k == 0) { /* an empty sum: c = 0, without a gemm per batch */
        memset(ag__ptr(c), 0, (size_t)ag__numel(c->ndim, c->shape) * ag_dtype_size(c->dtype));
        return AG_OK;
    }
    int64_t nbatch = ag__numel(nb, c->shape), macs, total; /* saturated: they only pick the split */
    if (ag__mul_overflow(c->shape[nb] * c->shape[nb + 1], k, &macs)) macs = INT64_MAX;
    if (ag__mul_overflow(macs, nbatch, &total)) total = INT64_MAX;
    /* Products from PAR_MACS up are split over the batch too when the batch divides evenly
     * over the threads or is long (at most 1/4 idle): one fork for the whole batch, not one
     * per product plus sgemm's own barriers, each of which waits a time slice when the
     * machine is busy (64 x 128³ forward, 2 threads, wall, min of 10 at load 16-19 on
     * 2 cores: 1.5 ms split, 600-700 ms a product at a time; 3.0 ms on one thread) */
    int threads = 1, most = omp_get_max_threads();
    bool split = macs < PAR_MACS || nbatch % most == 0 || nbatch >= 4 * (int64_t)most;
    if (nbatch > 1 && split && !omp_in_parallel() &&
        ((ag__backend == AG_BACKEND_AUTO && total >= PAR_MACS) || ag__backend == AG_BACKEND_ACCEL))
        threads = nbatch < most ? (int)nbatch : most;
    /* Not one parallel construct with an if clause: with threads 1 its inactive team made each
     * product's own threads (gemm_threads) a nested team of new threads, call after call. */
    if (threads > 1) {
        ag_status failed = AG_OK;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t bi = 0; bi < nbatch; bi++) {
            ag_status st;
#pragma omp atomic read
            st = failed;
            if (!st && (st = batch_item(c, a, ta, b, tb, bi)) != AG_OK) {
#pragma omp atomic write
                failed = st;
            }
        }
        if (!failed) return AG_OK;
        /* A failure on a worker left its message on that thread: redo the batch here for it. */
    }
    for (int64_t bi = 0; bi < nbatch; bi++) {
        ag_status st = batch_item(c, a, ta, b, tb, bi);
        if (st) return st;
    }
    return AG_OK;
}

/* ---- matmul ---------------------------------------------------------------------------------------- */
static ag_status mm_backward(ag_tensor *out, ag_tensor *gout);
/* y = a·b (batched);  da = dy·bᵀ, db = aᵀ·dy, each summed over broadcast batch dims */
/* dy = da·b + a·db */
static ag_tensor *matmul_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *y = tin[0] ? ag_matmul(tin[0], out->in[1]) : NULL;
    if (tin[0] && !y) return NULL;
    return tin[1] ? ag__jvp_add(y, ag_matmul(out->in[0], tin[1])) : y;
}
static ag_status mm_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static const ag_op op_matmul = {.name = "matmul", .grad_fn = "MmBackward0", .backward = mm_backward,
                                .saves = AG_SAVES_IN0 | AG_SAVES_IN1,
                                .math = "y = a·b (batched);  da = dy·bᵀ, db = aᵀ·dy, summed over broadcast batch dims",
                                .backward_graph = mm_backward_graph, .jvp = matmul_jvp,
                                .tangent = "ẏ = ȧ·b + a·ḃ"};

/* xᵀ over the last two dims. */
static ag_tensor *mT(ag_tensor *x) { return ag_transpose(x, x->ndim - 2, x->ndim - 1); }

/* da = dy·bᵀ, db = aᵀ·dy in agrad ops (the engine sums broadcast batch dims down). */
static ag_status mm_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *a = out->in[0], *b = out->in[1];
    if (ag__wants(out, 0) && !(gin[0] = ag_matmul(gout, mT(b)))) return ag_last_status();
    if (ag__wants(out, 1) && !(gin[1] = ag_matmul(mT(a), gout))) return ag_last_status();
    return AG_OK;
}

static ag_tensor *mm_core(ag_tensor *a, ag_tensor *b) {
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    int na = a->ndim, nb = b->ndim;
    if (a->shape[na - 1] != b->shape[nb - 2])
        return ag__fail_null(AG_ERR_SHAPE, "matmul: %s x %s: inner dimensions differ (%lld vs %lld)", ag__tshape(s1, a),
                             ag__tshape(s2, b), (long long)a->shape[na - 1], (long long)b->shape[nb - 2]);
    /* Broadcast the batch dims. */
    int n = na > nb ? na : nb;
    int64_t shape[AG_MAX_DIMS];
    for (int d = 0; d < n - 2; d++) {
        int da = d - (n - na), db = d - (n - nb);
        int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
        if (sa != sb && sa != 1 && sb != 1)
            return ag__fail_null(AG_ERR_SHAPE, "matmul: %s x %s: batch dimensions cannot be broadcast", ag__tshape(s1, a),
                                 ag__tshape(s2, b));
        shape[d] = sa == 1 ? sb : sa;
    }
    shape[n - 2] = a->shape[na - 2];
    shape[n - 1] = b->shape[nb - 1];
    if (ag__check_alloc("matmul", n, shape, a->dtype)) return NULL; /* expanded operands may broadcast that far */
    ag_tensor *y = ag__new(a->dtype, n, shape);
    if (!y) return NULL;
    if (batched_gemm(y, a, false, b, false)) {
        ag__discard(y);
        return NULL;
    }
    ag_tensor *in[2] = {a, b};
    if (ag__needs_grad(in, 2) && !ag__record(y, &op_matmul, in, 2)) return NULL;
    return ag__check_finite(y, "matmul"); /* ∞ - ∞, 0·∞ and overflow make NaN and ±inf */
}

static ag_status mm_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *a = out->in[0], *b = out->in[1];
    for (int which = 0; which < 2; which++) {
        if (!ag__wants(out, which)) continue;
        /* The gradient over the output's batch dims, then summed down by accumulate. */
        int64_t shape[AG_MAX_DIMS];
        memcpy(shape, out->shape, sizeof(int64_t) * (size_t)out->ndim);
        const ag_tensor *src = which == 0 ? a : b;
        shape[out->ndim - 2] = src->shape[src->ndim - 2];
        shape[out->ndim - 1] = src->shape[src->ndim - 1];
        bool none = ag__numel(out->ndim, out->shape) == 0; /* an empty product: the gradient is 0, at the input's size */
        ag_tensor *g = none ? ag__new_unowned(src->dtype, src->ndim, src->shape, true)
                            : ag__new_unowned(out->dtype, out->ndim, shape, false);
        if (!g) return AG_ERR_NOMEM;
        ag_status st = none ? AG_OK : which == 0 ? batched_gemm(g, gout, false, b, true) : batched_gemm(g, a, true, gout, false);
        if (st) {
            ag_release(g);
            return st;
        }
        if ((st = ag__accumulate(src == a ? a : b, g))) return st;
    }
    return AG_OK;
}

ag_tensor *ag_matmul(ag_tensor *a, ag_tensor *b) {
    AG_CHECK_HANDLES(NULL, "matmul", a, b);
    if (!a || !b) return NULL;
    if (ag__check_float("matmul", a, b)) return NULL;
    if (a->ndim == 0 || b->ndim == 0)
        return ag__fail_null(AG_ERR_SHAPE, "matmul: both arguments need at least 1 dim, got %d and %d", a->ndim, b->ndim);
    bool va = a->ndim == 1, vb = b->ndim == 1;
    if (!va && !vb) return mm_core(a, b);
    /* 1-D operands become matrices and the added dim is removed afterwards, as torch.matmul. */
    if (ag__composite_begin("matmul")) return NULL;
    ag_tensor *a2 = va ? ag_unsqueeze(a, 0) : a;
    ag_tensor *b2 = vb ? ag_unsqueeze(b, 1) : b;
    ag_tensor *y = a2 && b2 ? mm_core(a2, b2) : NULL;
    if (y && va && vb) y = ag_reshape(y, AG_SCALAR_SHAPE);
    else if (y && vb) y = ag_squeeze(y, -1);
    else if (y && va) y = ag_squeeze(y, -2);
    return ag__composite_end(y);
}

/* ---- bmm, addmm, baddbmm, outer: matmul with PyTorch's stricter shapes --------------------------------- */
/* Checks a·b for bmm (two 3-D tensors with one batch size) or mm (two matrices): AG_OK, or the
 * failure recorded naming op. */
static ag_status check_product(const char *op, const ag_tensor *a, const ag_tensor *b, int ndim) {
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (ag__check_float(op, a, b)) return AG_ERR_DTYPE;
    if (a->ndim != ndim || b->ndim != ndim)
        return ag__fail(AG_ERR_SHAPE, "%s: expects two %d-D tensors, got %s and %s", op, ndim, ag__tshape(s1, a),
                        ag__tshape(s2, b));
    if (ndim == 3 && a->shape[0] != b->shape[0])
        return ag__fail(AG_ERR_SHAPE, "%s: %s x %s: batch sizes differ (%lld vs %lld)", op, ag__tshape(s1, a),
                        ag__tshape(s2, b), (long long)a->shape[0], (long long)b->shape[0]);
    if (a->shape[ndim - 1] != b->shape[ndim - 2])
        return ag__fail(AG_ERR_SHAPE, "%s: %s x %s: inner dimensions differ (%lld vs %lld)", op, ag__tshape(s1, a),
                        ag__tshape(s2, b), (long long)a->shape[ndim - 1], (long long)b->shape[ndim - 2]);
    return AG_OK;
}

ag_tensor *ag_bmm(ag_tensor *a, ag_tensor *b) {
    AG_CHECK_HANDLES(NULL, "bmm", a, b);
    if (!a || !b || check_product("bmm", a, b, 3)) return NULL;
    return mm_core(a, b); /* y[i] = a[i]·b[i] */
}

/* beta·input + alpha·(a·b) for addmm (ndim 2) and baddbmm (ndim 3), as a composite of matmul,
 * the scalar products and add; input broadcasts to the product's shape, and is not read when
 * beta is 0 (its NaN do not propagate), as PyTorch. */
static ag_tensor *add_product(const char *op, ag_tensor *input, ag_tensor *a, ag_tensor *b, double beta, double alpha,
                              int ndim) {
    if (!input || !a || !b || check_product(op, a, b, ndim) || ag__check_float(op, input, a)) return NULL;
    int64_t shape[3] = {a->shape[0], a->shape[ndim - 2], b->shape[ndim - 1]};
    if (ndim == 2) shape[0] = a->shape[0], shape[1] = b->shape[1];
    if (!ag__broadcastable(input->ndim, input->shape, ndim, shape)) {
        char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "%s: input %s cannot be broadcast to the product's shape %s", op,
                             ag__tshape(s1, input), ag__shape_str(s2, ndim, shape));
    }
    if (ag__composite_begin(op)) return NULL;
    ag_tensor *y = mm_core(a, b);
    if (y && alpha != 1) y = ag_mul_scalar(y, alpha);
    if (y && beta != 0) y = ag_add(beta == 1 ? input : ag_mul_scalar(input, beta), y);
    return ag__composite_end(y);
}

ag_tensor *ag_addmm(ag_tensor *input, ag_tensor *a, ag_tensor *b, double beta, double alpha) {
    AG_CHECK_HANDLES(NULL, "addmm", input, a, b);
    return add_product("addmm", input, a, b, beta, alpha, 2);
}

ag_tensor *ag_baddbmm(ag_tensor *input, ag_tensor *a, ag_tensor *b, double beta, double alpha) {
    AG_CHECK_HANDLES(NULL, "baddbmm", input, a, b);
    return add_product("baddbmm", input, a, b, beta, alpha, 3);
}

ag_tensor *ag_outer(ag_tensor *a, ag_tensor *b) {
    AG_CHECK_HANDLES(NULL, "outer", a, b);
    if (!a || !b || ag__check_float("outer", a, b)) return NULL;
    if (a->ndim != 1 || b->ndim != 1) {
        char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "outer: expects two 1-D tensors, got %s and %s", ag__tshape(s1, a),
                             ag__tshape(s2, b));
    }
    if (ag__composite_begin("outer")) return NULL; /* y[i][j] = a[i]·b[j]: [m, 1]·[1, n] */
    ag_tensor *ac = ag_unsqueeze(a, 1), *br = ag_unsqueeze(b, 0);
    return ag__composite_end(ac && br ? mm_core(ac, br) : NULL);
}

/* ---- linear ------------------------------------------------------------------------------------------ */
static ag_status linear_backward(ag_tensor *out, ag_tensor *gout);
/* y = x·Wᵀ + b;  dx = dy·W, dW = dyᵀ·x, db = Σ_rows dy */
/* dy = dx·Wᵀ + x·dWᵀ + db */
static ag_tensor *linear_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *y = tin[0] ? ag_linear(tin[0], out->in[1], NULL) : NULL;
    if (tin[0] && !y) return NULL;
    if (tin[1] && !(y = ag__jvp_add(y, ag_linear(out->in[0], tin[1], NULL)))) return NULL;
    if (out->nin > 2 && tin[2]) y = y ? ag_add(y, tin[2]) : ag_add(ag_zeros_like(out), tin[2]);
    return y;
}
static ag_status linear_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static const ag_op op_linear = {.name = "linear", .grad_fn = "AddmmBackward0", .backward = linear_backward,
                                .saves = AG_SAVES_IN0 | AG_SAVES_IN1,
                                .math = "y = x·Wᵀ + b;  dx = dy·W, dW = dyᵀ·x, db = Σ_rows dy",
                                .backward_graph = linear_backward_graph, .jvp = linear_jvp,
                                .tangent = "ẏ = ẋ·Wᵀ + x·Ẇᵀ + ḃ"};

/* dx = dy·W, dW = dyᵀ·x over the rows of x and dy as matrices, db = dy (the engine
 * sums it down to b's shape), in agrad ops. */
static ag_status linear_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0], *w = out->in[1];
    int64_t nin = w->shape[1], nout = w->shape[0], rows = nin ? ag_numel(x) / nin : 0;
    if (ag__wants(out, 0) && !(gin[0] = ag_matmul(gout, w))) return ag_last_status();
    if (ag__wants(out, 1) && !(gin[1] = ag_matmul(ag_transpose(ag_reshape(gout, AG_SHAPE(rows, nout)), 0, 1),
                                                  ag_reshape(x, AG_SHAPE(rows, nin)))))
        return ag_last_status();
    if (out->nin > 2 && ag__wants(out, 2)) gin[2] = gout;
    return AG_OK;
}

/* x as an [N, in] matrix (x must be contiguous). */
static mat rows_of(const ag_tensor *x) {
    int64_t in = x->shape[x->ndim - 1];
    return (mat){ag__ptr(x), in ? ag_numel(x) / in : 0, in, in, 1};
}

static mat mat2(const ag_tensor *w, bool tr) {
    mat m = {ag__ptr(w), w->shape[0], w->shape[1], w->stride[0], w->stride[1]};
    return tr ? (mat){m.p, m.cols, m.rows, m.cs, m.rs} : m;
}

/* ---- linear under bf16 autocast: each operand rounded once ------------------------------------
 * The forward rounds x and W to bfloat16 into one buffer that the node keeps (as its saved tensor,
 * raw bf16 pairs in a float32 tensor); the adjoint rounds dy once and reads all three from there:
 * three conversions a step where six products' operands would take six (x and W twice, dy twice). */

/* Whether linear's products of x [rows, in] and W [out, in] run in bf16 (as gemm would). */
static bool linear_in_bf16(const ag_tensor *x, int64_t rows, int64_t in, int64_t out) {
    return ag__autocast == AG_AUTOCAST_BF16 && x->dtype == AG_F32 && rows > 0 && out > 0 &&
           !gemm_loop(AG_F32, macs_of(rows, in, out), in);
}

/* y = x·Wᵀ + b (y as an [rows, out] matrix, x contiguous) from x and W rounded to bfloat16, the
 * roundings left in the returned buffer: x's rows·in values, then W's out·in, row-major.  NULL
 * (nothing recorded) when memory or the bf16 primitive is missing: the caller computes y in float32. */
static ag_tensor *linear_fwd_bf16(mat y, mat x, const ag_tensor *w, const char *bias) {
    const int64_t out = w->shape[0], in = w->shape[1], nx = x.rows * in, nw = out * in; /* element counts */
    const int64_t half = (nx + nw + 1) / 2;
    ag_tensor *buf = ag__new_unowned(AG_F32, 1, &half, false);
    if (!buf) return NULL;
    uint16_t *xb = (uint16_t *)ag__ptr(buf), *wb = xb + nx;
    ag__f32_to_bf16(xb, (const float *)x.p, nx);
    ag__f32_to_bf16_2d(wb, (const float *)ag__ptr(w), out, in, w->stride[0], w->stride[1]);
    if (!ag__dnnl_matmul_bf16(x.rows, in, out, xb, in, 1, wb, 1, in, (float *)y.p, y.cols, (const float *)bias,
                              gemm_threads(x.rows, out, macs_of(x.rows, in, out)))) {
        ag_release(buf);
        return NULL;
    }
    return buf;
}

/* The adjoint of linear_fwd_bf16 from its buffer: dx = dy·W into gx (when not NULL), dW = dyᵀ·x
 * into gw (when not NULL), dy (gout, [rows, out] contiguous) rounded once.  false (nothing
 * recorded) when memory or the primitive is missing: the caller computes them in float32. */
/* Product i of linear's bf16 adjoint: 0 dx = dy·W, 1 dW = dyᵀ·x (NULL target: nothing to do). */
static bool linear_bwd_bf16_product(int i, int64_t rows, int64_t out, int64_t in, const uint16_t *dyb,
                                    const uint16_t *xb, const uint16_t *wb, float *gx, float *gw, int threads) {
    if (i == 0) return !gx || ag__dnnl_matmul_bf16(rows, out, in, dyb, out, 1, wb, in, 1, gx, in, NULL, threads);
    return !gw || ag__dnnl_matmul_bf16(out, rows, in, dyb, 1, out, xb, in, 1, gw, in, NULL, threads);
}

static bool linear_bwd_bf16(const ag_tensor *saved, mat dy, int64_t in, float *gx, float *gw) {
    const int64_t rows = dy.rows, out = dy.cols;
    const uint16_t *xb = (const uint16_t *)ag__ptr(saved), *wb = xb + rows * in;
    uint16_t *dyb = ag__alloc_n(rows * out, sizeof(uint16_t)); /* the gradient's count */
    if (!dyb) return false;
    ag__f32_to_bf16(dyb, (const float *)dy.p, rows * out);
    const int64_t macs = macs_of(rows, out, in);
    const int threads = gemm_threads(rows, in, macs); /* by dx [rows, in] (one row: dW is an outer product) */
    bool done[2] = {true, true};
    /* dx and dW at once where concurrent() allows, each on one thread; else in turn, each with
     * the threads it warrants.  Not one parallel construct with an if clause: its inactive team
     * made oneDNN's own threads a nested team, new threads each call (2 threads: 4.7x slower). */
    if (gx && gw && concurrent(macs, macs)) {
#pragma omp parallel for num_threads(2) schedule(static, 1)
        for (int i = 0; i < 2; i++) done[i] = linear_bwd_bf16_product(i, rows, out, in, dyb, xb, wb, gx, gw, 1);
    } else {
        for (int i = 0; i < 2; i++) done[i] = linear_bwd_bf16_product(i, rows, out, in, dyb, xb, wb, gx, gw, threads);
    }
    ag__free(dyb);
    return done[0] && done[1];
}

static const ag_op op_linear_relu;

/* y = x·Wᵀ + b, or relu of it with relu (op names the op in messages): ag_linear and ag_linear_relu. */
static ag_tensor *linear_apply(const char *op, ag_tensor *x, ag_tensor *w, ag_tensor *b, bool relu) {
    AG_CHECK_HANDLES(NULL, op, x, w, b);
    if (!x || !w) return NULL;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR], s3[AG_SHAPE_STR];
    if (ag__check_float(op, x, w) || (b && ag__check_float(op, b, x))) return NULL;
    if (w->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
        return ag__fail_null(AG_ERR_SHAPE, "%s: input %s and weight %s: expected weight [out_features, %lld]", op,
                             ag__tshape(s1, x), ag__tshape(s2, w), (long long)(x->ndim ? x->shape[x->ndim - 1] : 0));
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return ag__fail_null(AG_ERR_SHAPE, "%s: bias %s does not match weight %s (expected [%lld])", op,
                             ag__tshape(s3, b), ag__tshape(s2, w), (long long)w->shape[0]);
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = w->shape[0];
    if (ag__check_alloc(op, x->ndim, shape, x->dtype)) return NULL; /* x or w may be an expanded view */
    ag_tensor *y = ag__new(x->dtype, x->ndim, shape);
    ag_tensor *xc = y ? ag__contig_or_copy(x) : NULL;
    ag_tensor *bc = xc && b ? ag__contig_or_copy(b) : NULL;
    ag_tensor *rounded = NULL; /* under bf16 autocast: x and W in bf16, kept for the adjoint */
    ag_status st = AG_ERR_NOMEM;
    if (xc && (bc || !b)) {
        mat my = rows_of(y), mx = rows_of(xc);
        const char *bias = bc ? ag__ptr(bc) : NULL;
        if (!relu && linear_in_bf16(x, mx.rows, mx.cols, my.cols) && (rounded = linear_fwd_bf16(my, mx, w, bias)))
            st = AG_OK;
        else
            st = gemm_act(x->dtype, my, mx, mat2(w, true), bias, relu);
    }
    ag_release(xc);
    ag_release(bc);
    if (st) {
        ag__discard(y);
        return NULL;
    }
    ag_tensor *in[3] = {x, w, b};
    if (!(y = ag__record_saved(y, relu ? &op_linear_relu : &op_linear, in, b ? 3 : 2, rounded))) return NULL;
    return ag__check_finite(y, op);
}

ag_tensor *ag_linear(ag_tensor *x, ag_tensor *w, ag_tensor *b) { return linear_apply("linear", x, w, b, false); }

ag_tensor *ag_linear_relu(ag_tensor *x, ag_tensor *w, ag_tensor *b) { return linear_apply("linear_relu", x, w, b, true); }

/* The bf16 adjoint (linear_bwd_bf16) when the forward left its roundings, into new gradients
 * accumulated into x and W; else nothing done and *st left AG_OK (false: the float32 path runs). */
static bool linear_backward_bf16(ag_tensor *out, mat dy, ag_status *st) {
    ag_tensor *x = out->in[0], *w = out->in[1];
    if (!out->saved || ag__autocast != AG_AUTOCAST_BF16) return false;
    const bool want_x = ag__wants(out, 0), want_w = ag__wants(out, 1);
    ag_tensor *gx = want_x ? ag__new_unowned(x->dtype, x->ndim, x->shape, false) : NULL;
    ag_tensor *gw = want_w ? ag__new_unowned(w->dtype, 2, w->shape, false) : NULL;
    if ((want_x && !gx) || (want_w && !gw) ||
        !linear_bwd_bf16(out->saved, dy, w->shape[1], gx ? (float *)ag__ptr(gx) : NULL, gw ? (float *)ag__ptr(gw) : NULL)) {
        ag_release(gx);
        ag_release(gw);
        return false;
    }
    if (gx) *st = ag__accumulate(x, gx);
    if (gw) {
        if (*st) ag_release(gw);
        else *st = ag__accumulate(w, gw);
    }
    return true;
}

/* The bias gradient: db when the caller made it (consumed), else Σ_rows dy accumulated in float64. */
static ag_tensor *bias_grad(ag_tensor *gout, ag_tensor *db, const ag_tensor *b) {
    return db ? db : ag__sum_to(gout, 1, b->shape);
}

/* linear's adjoint from dy = gout (contiguous, out's shape) into its inputs' gradients; db (NULL, or
 * the bias gradient already summed, consumed) is accumulated into b instead of Σ_rows dy. */
static ag_status linear_grads(ag_tensor *out, ag_tensor *gout, ag_tensor *db) {
    ag_tensor *x = out->in[0], *w = out->in[1], *b = out->nin > 2 ? out->in[2] : NULL;
    mat dy = rows_of(gout);
    ag_status st = AG_OK;
    if (!(b && b->requires_grad)) {
        ag_release(db);
        db = NULL;
    }
    if (linear_backward_bf16(out, dy, &st)) {
        if (!st && b && b->requires_grad) st = ag__accumulate(b, bias_grad(gout, db, b));
        else ag_release(db);
        return st;
    }
    const bool want_x = ag__wants(out, 0), want_w = ag__wants(out, 1);
    ag_tensor *gx = want_x ? ag__new_unowned(x->dtype, x->ndim, x->shape, false) : NULL;
    ag_tensor *gw = want_w ? ag__new_unowned(w->dtype, 2, w->shape, false) : NULL;
    ag_tensor *xc = gw ? ag__contig_or_copy(x) : NULL;
    if ((want_x && !gx) || (want_w && !xc)) {
        ag_release(gx), ag_release(gw), ag_release(xc), ag_release(db);
        return AG_ERR_NOMEM;
    }
    product p[2]; /* dx = dy·W, dW = dyᵀ·x */
    int n = 0;
    if (gx) p[n++] = (product){rows_of(gx), dy, mat2(w, false), false};
    if (gw) p[n++] = (product){{ag__ptr(gw), w->shape[0], w->shape[1], w->shape[1], 1}, {dy.p, dy.cols, dy.rows, 1, dy.cols},
                               rows_of(xc), dw_by_sgemm(dy.rows, w->shape[0], w->shape[1])};
    const bool halves = n == 2 && halves_fit(x->dtype, dy.rows, dy.cols, w->shape[1]);
    const bool lone = n == 1 && gw && dy.cs == 1 && dw_halves_fit(x->dtype, dy.rows, dy.cols, w->shape[1], p[0].sgemm);
    st = halves ? linear_halves(p[0].c, dy, p[0].b, p[1].c, p[1].b, p[1].sgemm) /* W's rows a thread */
         : lone ? dw_halves(p[0].c, dy, p[0].b) : AG_OK;                        /* dW's rows a thread */
    if (!(halves || lone) || (st && st != AG_ERR_NOMEM)) /* a failure's message on the worker: redone here in turn */
        st = run_products(x->dtype, p, n);
    ag_release(xc);
    if (st) {
        ag_release(gx), ag_release(gw), ag_release(db);
        return st;
    }
    if (gx && (st = ag__accumulate(x, gx))) {
        ag_release(gw), ag_release(db);
        return st;
    }
    if (gw && (st = ag__accumulate(w, gw))) {
        ag_release(db);
        return st;
    }
    if (b && b->requires_grad) /* db = Σ_rows dy, accumulated in float64 */
        st = ag__accumulate(b, bias_grad(gout, db, b));
    return st;
}

static ag_status linear_backward(ag_tensor *out, ag_tensor *gout) { return linear_grads(out, gout, NULL); }

/* ---- linear then ReLU ---------------------------------------------------------------------------------
 * y = relu(x·Wᵀ + b) as one node: the forward is the product with the ReLU in place after it, and the
 * adjoint makes dz = dy where y > 0 (or NaN, as relu's adjoint) else 0 in one pass that also sums dz's
 * columns into the bias gradient (float64), instead of relu's pass and then a column-sum pass over dz. */
static ag_status linear_relu_backward(ag_tensor *out, ag_tensor *gout);
static ag_status linear_relu_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *linear_relu_jvp(ag_tensor *out, ag_tensor *const *tin);
/* y = relu(x·Wᵀ + b);  dz = dy·[y > 0], dx = dz·W, dW = dzᵀ·x, db = Σ_rows dz */
/* dy = (dx·Wᵀ + x·dWᵀ + db)·[y > 0] */
static const ag_op op_linear_relu = {.name = "linear_relu", .grad_fn = "ReluBackward0", .backward = linear_relu_backward,
                                     .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_SAVES_OUT,
                                     .math = "y = relu(x·Wᵀ + b);  dz = dy·[y > 0], dx = dz·W, dW = dzᵀ·x, db = Σ_rows dz",
                                     .backward_graph = linear_relu_backward_graph, .jvp = linear_relu_jvp,
                                     .tangent = "ẏ = (ẋ·Wᵀ + x·Ẇᵀ + ḃ)·[y > 0]"};

static ag_tensor *linear_relu_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *t = linear_jvp(out, tin);
    return t ? ag_mul(t, ag__relu_mask(out)) : NULL;
}

static ag_status linear_relu_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *gz = ag_mul(gout, ag__relu_mask(out));
    return gz ? linear_backward_graph(out, gz, gin) : ag_last_status();
}

/* dz = (y <= 0 ? 0 : dy) over rows of ld elements, columns [0, n) from the pointers given, and
 * acc[j] += dz[i][j] down each column in row order (so each sum's order is fixed by the shape).  dz
 * may be dy itself (in place: each element is read before it is written, hence no restrict on
 * them and the simd loop, which needs no overlap check). */
#define RELU_MASK_SUM(SUF, T)                                                                                  \
    AG_VEC_CLONES static void relu_mask_sum_##SUF(T *dz, double *restrict acc, const T *restrict y, const T *dy, \
                                                  int64_t rows, int64_t ld, int64_t n) {                       \
        for (int64_t i = 0; i < rows; i++)                                                                     \
            _Pragma("omp simd") for (int64_t j = 0; j < n; j++) {                                              \
                const T d = dy[i * ld + j]; /* whatever y: no vmaskmovps in the AVX2 clone (mask22) */        \
                const T v = y[i * ld + j] <= 0 ? 0 : d;                                                        \
                dz[i * ld + j] = v;                                                                            \
                acc[j] += v;                                                                                   \
            }                                                                                                  \
    }
RELU_MASK_SUM(f32, float)
RELU_MASK_SUM(f64, double)

#define MASK_SUM_COLS 16 /* columns a thread's share is made of: a 64-byte line of float32 */

/* Share t of used of relu_mask_sum's one-chunk form: its blocks of columns, all rows. */
static void relu_mask_sum_share(ag_dtype dtype, char *dz, double *acc, const char *y, const char *dy, int64_t rows,
                                int64_t cols, int t, int used) {
    const int64_t blocks = (cols + MASK_SUM_COLS - 1) / MASK_SUM_COLS;
    const int64_t j0 = ag__share_start(blocks, t, used) * MASK_SUM_COLS;
    const int64_t j1 = ag__share_start(blocks, t + 1, used) * MASK_SUM_COLS < cols
                           ? ag__share_start(blocks, t + 1, used) * MASK_SUM_COLS : cols;
    const size_t off = (size_t)j0 * ag_dtype_size(dtype);
    if (j1 <= j0) return;
    if (dtype == AG_F64)
        relu_mask_sum_f64((double *)(dz + off), acc + j0, (const double *)(y + off), (const double *)(dy + off), rows,
                          cols, j1 - j0);
    else
        relu_mask_sum_f32((float *)(dz + off), acc + j0, (const float *)(y + off), (const float *)(dy + off), rows, cols,
                          j1 - j0);
}

/* ---- relu's mask and the bias sums by chunks of rows ---------------------------------------------------
 * With the columns split over two threads (each thread all rows of its half of every row) the pass ran 5x
 * slower than on one thread: mlp_784_256_10's [1024, 256] 195-200 µs on two threads (wall, chrt -f 10,
 * regions timed by an LD_PRELOAD shim around GOMP_parallel, the vCPUs apart), ~55 on one; its half rows
 * of 512 bytes, 1 KiB apart, half of them written by the other core the step before (dy by the product of
 * linear2's dx on one thread, y by the forward's ReLU pass split by rows), and the float64 sums of both
 * halves on one 64-byte line of the malloc'd acc, written every row by both cores.  By rows, each thread a
 * contiguous run: 34-40 µs.  So from MASK_CHUNK_ROWS·2 rows the rows split at fixed chunks of K rows (K
 * from the row count alone: MASK_CHUNK_ROWS, or more to keep at most MASK_MAX_CHUNKS chunks), each
 * chunk's column sums from 0 in row order into its own float64 partial (a 64-byte aligned row of them, no
 * line shared between partials), a thread taking whole chunks; then acc[j] = Σ_k partial_k[j] in chunk
 * order, the columns split over the threads.  One thread makes the same chunks: the bits do not depend
 * on the thread count.  Fewer rows: one chunk, the sums in row order (the bits of before), the columns
 * split over the threads.  dz is the same elementwise map either way. */
#define MASK_CHUNK_ROWS 64 /* rows of a chunk, at least */
#define MASK_MAX_CHUNKS 16 /* chunks at most: their partials are MASK_MAX_CHUNKS rows of cols float64 */

/* Rows of a chunk of relu_mask_sum over `rows` rows (a multiple of 8 from MASK_CHUNK_ROWS up). */
static int64_t mask_chunk_rows(int64_t rows) {
    const int64_t k = (rows + MASK_MAX_CHUNKS - 1) / MASK_MAX_CHUNKS;
    return k <= MASK_CHUNK_ROWS ? MASK_CHUNK_ROWS : (k + 7) / 8 * 8;
}

/* p rounded up to a 64-byte boundary (p from an allocation 64 bytes longer than what is used). */
static double *line_align(double *p) { return (double *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

/* Thread t of used in relu_mask_sum's chunked form: its chunks (dz and partial k from rows [k·K, k·K + K)),
 * then, after the team's barrier, acc's columns of its share summed over the partials in chunk order. */
static void relu_mask_sum_chunks(ag_dtype dtype, char *dz, double *acc, double *part, int64_t ldp, const char *y,
                                 const char *dy, int64_t rows, int64_t cols, int64_t K, int t, int used) {
    const int64_t chunks = (rows + K - 1) / K, es = (int64_t)ag_dtype_size(dtype);
    for (int64_t k = ag__share_start(chunks, t, used); k < ag__share_start(chunks, t + 1, used); k++) {
        const int64_t r0 = k * K, n = r0 + K < rows ? K : rows - r0;
        const size_t off = (size_t)(r0 * cols * es);
        double *pk = part + k * ldp;
        memset(pk, 0, sizeof(double) * (size_t)cols);
        if (dtype == AG_F64)
            relu_mask_sum_f64((double *)(dz + off), pk, (const double *)(y + off), (const double *)(dy + off), n, cols,
                              cols);
        else
            relu_mask_sum_f32((float *)(dz + off), pk, (const float *)(y + off), (const float *)(dy + off), n, cols, cols);
    }
    if (used > 1) {
#pragma omp barrier
    }
    const int64_t lines = (cols + 7) / 8; /* acc's 64-byte lines (8 float64), a thread's share whole lines */
    const int64_t j0 = ag__share_start(lines, t, used) * 8, j1e = ag__share_start(lines, t + 1, used) * 8;
    for (int64_t j = j0; j < (j1e < cols ? j1e : cols); j++) {
        double sum = part[j];
        for (int64_t k = 1; k < chunks; k++) sum += part[k * ldp + j];
        acc[j] = sum;
    }
}

/* dz and acc (cols float64 sums) from y and dy ([rows, cols] contiguous, of dtype): by fixed chunks of rows
 * from 2·MASK_CHUNK_ROWS rows (relu_mask_sum_chunks; the chunks split over the threads), else in one chunk
 * with the columns split over the threads in blocks of MASK_SUM_COLS; either way the bits do not depend on
 * the thread count.  false (nothing written) when the partials' memory is missing. */
static bool relu_mask_sum(ag_dtype dtype, char *dz, double *acc, const char *y, const char *dy, int64_t rows,
                          int64_t cols) {
    const int64_t K = mask_chunk_rows(rows), chunks = (rows + K - 1) / K;
    int nt = ag__threads_for(rows * cols);
    if (chunks >= 2) {
        const int64_t ldp = (cols + 7) / 8 * 8; /* a partial's row: whole 64-byte lines */
        double *raw = ag__alloc_n(chunks * ldp + 8, sizeof(double)); /* chunks · ldp <= 16 · ldp */
        if (!raw) return false;
        double *part = line_align(raw);
        if (nt > chunks) nt = (int)chunks;
        if (nt <= 1) {
            relu_mask_sum_chunks(dtype, dz, acc, part, ldp, y, dy, rows, cols, K, 0, 1);
        } else {
#pragma omp parallel num_threads(nt)
            relu_mask_sum_chunks(dtype, dz, acc, part, ldp, y, dy, rows, cols, K, omp_get_thread_num(),
                                 omp_get_num_threads());
        }
        ag__free(raw);
        return true;
    }
    const int64_t blocks = (cols + MASK_SUM_COLS - 1) / MASK_SUM_COLS;
    memset(acc, 0, sizeof(double) * (size_t)cols);
    if (nt > blocks) nt = (int)blocks;
    if (nt <= 1) { /* no parallel region at all: even a one-thread team costs ~1 µs */
        relu_mask_sum_share(dtype, dz, acc, y, dy, rows, cols, 0, 1);
        return true;
    }
#pragma omp parallel num_threads(nt)
    relu_mask_sum_share(dtype, dz, acc, y, dy, rows, cols, omp_get_thread_num(), omp_get_num_threads());
    return true;
}

static ag_status linear_relu_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *b = out->nin > 2 ? out->in[2] : NULL;
    const int64_t cols = out->shape[out->ndim - 1], rows = cols ? ag_numel(out) / cols : 0;
    /* dz over dy in place when only the engine holds dy (linear2's dx in the Transformer's FFN): no
     * [rows, cols] buffer, and a third less memory traffic in the pass */
    ag_tensor *dz = ag__gout_writable(gout) ? ag__retain(gout) : ag__new_unowned(out->dtype, out->ndim, out->shape, false);
    ag_tensor *db = dz && b && b->requires_grad ? ag__new_unowned(b->dtype, 1, b->shape, false) : NULL;
    /* cols (W's row count) sums, 64-byte aligned: the threads' shares of columns then share no line */
    double *raw = ag__alloc_n(cols + 8, sizeof(double)), *acc = raw ? line_align(raw) : NULL;
    if (!dz || !acc || (b && b->requires_grad && !db) ||
        !relu_mask_sum(out->dtype, ag__ptr(dz), acc, ag__ptr(out), ag__ptr(gout), rows, cols)) {
        ag_release(dz), ag_release(db), ag__free(raw);
        return AG_ERR_NOMEM;
    }
    for (int64_t j = 0; db && j < cols; j++) /* rounded once */
        if (db->dtype == AG_F64) ((double *)ag__ptr(db))[j] = acc[j];
        else ((float *)ag__ptr(db))[j] = (float)acc[j];
    ag__free(raw);
    ag_status st = linear_grads(out, dz, db);
    ag_release(dz);
    return st;
}

const ag_op *const ag__matmul_ops[] = {&op_matmul, &op_linear, &op_linear_relu, NULL};

/* Exported for ops/attention.c (ops/matmul.h). */
ag_status ag__batched_gemm(ag_tensor *c, const ag_tensor *a, bool ta, const ag_tensor *b, bool tb) {
    return batched_gemm(c, a, ta, b, tb);
}

bool ag__linear_by_halves(int64_t rows, int64_t in, int64_t out) {
    return halves_fit(AG_F32, rows, out, in);
}

bool ag__sgemm_1t(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                  int64_t ldb, bool acc, float *c, int64_t ldc) {
    return sgemm_threads(1, ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, a, lda, b, ldb, acc ? 1.0f : 0.0f, c, ldc) ==
           dnnl_success;
}

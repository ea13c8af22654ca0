/*
 * linalg.c - torch.linalg with gradients: solve, solve_triangular, inv, det,
 * slogdet, cholesky, cholesky_solve, eigh, eigvalsh, qr, svd, pinv and the norms,
 * on batches of matrices [..., m, n].
 *
 * Forwards: each matrix of the batch is copied (broadcast, converted from any
 * strides) into a contiguous row-major work tensor of the input's dtype and
 * factorised by LAPACKE (sgetrf/dgetrf and friends, Debian's LAPACKE on
 * OpenBLAS).  LAPACK reports a singular or non-positive-definite matrix (or a
 * NaN, through LAPACKE's NaN check) as an info code: it becomes AG_ERR_VALUE
 * naming the op and the batch element (fail_element).  LAPACK counts with
 * lapack_int, so a matrix of more than 2^31 - 1 elements is refused up front.
 *
 * Adjoints follow PyTorch's derivatives.yaml / FunctionsManual.cpp.  Those of the
 * matrix ops compute in the tensors' dtype, as PyTorch's: a float32 gradient from float32
 * solves (the forward's LU factors where it kept them) and sgemm products (mm_dt), as
 * accurate as its forward, at half the cost of float64 and without float64 copies (det's
 * and slogdet's scales and the norms' sums excepted).  A gradient computed over
 * broadcast batch dims is summed down by ag__accumulate.  The matrix products go to
 * BLAS's sgemm/dgemm, OpenBLAS set to one thread (blas_threads); the elements of a batch
 * run over agrad's threads (run_batch), and a large call outside them on OpenBLAS's
 * (blas_widen, lapack_widen).
 *
 * Each op's second-order rule (backward_graph: the adjoint again, in recorded agrad
 * ops, for create_graph) and tangent rule (jvp, forward mode) sit after its adjoint;
 * they compute in the tensors' dtype, and fail where the adjoint fails (a repeated
 * eigenvalue or singular value under a nonzero numerator).
 *
 * Ops with several results (slogdet, eigh, qr, svd) compute one packed tensor, the registered
 * op, and return views of it (ag_select/ag_narrow), through which both gradients
 * reach the one adjoint.
 */
#include <dlfcn.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if AG_HAVE_CBLAS
#include <cblas.h>
#endif
#include "core/iter.h"
#include "core/memorder.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "autograd/tape.h"
#include "ops/jvp.h"
#include "agrad/linalg.h"
#include "agrad/ops.h"

#define ROW LAPACK_ROW_MAJOR
/* The largest count LAPACK can index a matrix with (lapack_int is int unless ILP64). */
#define LAPACK_MAX ((int64_t)(sizeof(lapack_int) == 4 ? 2147483647 : INT64_MAX))

/* ---- shapes, batches, work tensors ---------------------------------------------------------------- */

/* OpenBLAS runs LAPACK and BLAS on a pool of threads of its own that spin while
 * waiting, and so do agrad's OpenMP threads: together they oversubscribe the cores
 * (a 258 x 258 solve took 32 ms instead of 1.2 ms on the 2-core machine).  So the
 * first linear algebra call sets OpenBLAS to one thread, when the BLAS is OpenBLAS
 * (found by name, so that any other BLAS links too) and OPENBLAS_NUM_THREADS does
 * not say otherwise. */
static pthread_once_t blas_threads_once = PTHREAD_ONCE_INIT;
/* Whether BLAS runs each call on the calling thread alone (OpenBLAS at one thread), so that the
 * elements of a batch may run on agrad's threads (run_batch) without oversubscribing the cores. */
static bool blas_single;
/* openblas_set_num_threads when blas_threads set OpenBLAS to one thread (blas_widen's), else NULL. */
static void (*blas_set)(int);
static void blas_threads(void) {
    void *self = dlopen(NULL, RTLD_LAZY);
    if (!self) return;
    union { void *p; void (*f)(int); } set = {dlsym(self, "openblas_set_num_threads")};
    union { void *p; int (*f)(void); } get = {dlsym(self, "openblas_get_num_threads")};
    if (set.p && !getenv("OPENBLAS_NUM_THREADS")) set.f(1), blas_set = set.f;
    blas_single = get.p && get.f() == 1;
    if (!blas_single) blas_set = NULL;
    dlclose(self);
}

/* The multiply-adds from which one BLAS product or triangular solve (gemm, trsm) runs on
 * OpenBLAS's threads: measured on the 2-core host (OPENBLAS_CORETYPE=COOPERLAKE, wall clock at
 * real-time priority), 2 threads took sgemm 128³ from 36 to 33 µs, 256³ from 1 012 to 530,
 * 1024³ from 11.6 to 6.0 ms, strsm 256 x 256 from 242 to 168 µs and 1024 x 1024 from 8.5 to
 * 4.7 ms, strsm 1024 x 16 not at all (272-459 for 264-315). */
#define BLAS_WIDE_MIN 8e6
/* Set while this thread runs a call blas_widen widened (a nested one leaves it so). */
static _Thread_local bool blas_wide;

/* Lets the next BLAS call of this thread, of about `work` multiply-adds, run on agrad's threads
 * (ag_set_num_threads) through OpenBLAS's pool: when blas_threads set OpenBLAS to one thread,
 * outside agrad's parallel regions (a batch's elements on agrad's threads keep one each) and
 * from BLAS_WIDE_MIN.  OpenBLAS's gemm and trsm split the result's rows and columns among
 * their threads, never the sums, but the split decides which elements its edge kernels compute,
 * which may sum in another order: the last bits may differ on 1 and 2 threads (OpenBLAS 0.3.21's
 * Haswell/Zen sgemm at 240 x 240 x 160, its SkylakeX/Cooperlake sgemm at 129 x 1000 x 131).  Returns
 * whether it widened; blas_narrow(that) after the call sets OpenBLAS back to one thread.  Another
 * thread of the process calling BLAS meanwhile may run on the pool too (the setting is
 * OpenBLAS's, global): the same results, only the cores shared. */
static bool blas_widen(double work) {
    if (!blas_set || blas_wide || work < BLAS_WIDE_MIN || omp_in_parallel()) return false;
    int nt = ag__threads_for(work < 1e15 ? (int64_t)work : (int64_t)1e15);
    if (nt <= 1) return false;
    blas_wide = true;
    blas_set(nt);
    return true;
}
static void blas_narrow(bool widened) {
    if (!widened) return;
    blas_set(1);
    blas_wide = false;
}
/* blas_narrow(widened), then info: `return narrowed(wide, call)` runs the call, then narrows. */
static lapack_int narrowed(bool widened, lapack_int info) {
    blas_narrow(widened);
    return info;
}

/* The size (m·n·min(m, n) of the matrix) from which LAPACK's factorisations (getrf, potrf, syevd,
 * geqrf, orgqr, gesdd) run on OpenBLAS's threads, and getri's: measured as BLAS_WIDE_MIN, 2 threads
 * took n = 640 about as long as one (getrf 4.5 ms both, geqrf 6.4 -> 8.3, gesdd 79 -> 82), n = 768
 * 15-20 % less (getrf 8.2 -> 6.9 ms, potrf 3.9 -> 3.2, syevd 70 -> 56, geqrf 15.1 -> 13.2, gesdd 159
 * -> 139) and n = 1024 10-35 % less; getri 256 from 1 108 to 814 µs.  Unlike gemm and trsm, these
 * run other algorithms on several threads (getrf's recursive panels, the reductions' blocked
 * updates in another order): a single matrix of this size gives other bits on 1 and 2 threads. */
#define LAPACK_WIDE_MIN (768.0 * 768.0 * 768.0)
#define GETRI_WIDE_MIN (256.0 * 256.0 * 256.0)

/* blas_widen for a LAPACK call on an m x n matrix when m·n·min(m, n) reaches min. */
static bool lapack_widen(lapack_int m, lapack_int n, double min) {
    double work = (double)m * (double)n * (double)(m < n ? m : n);
    return work >= min && blas_widen(work);
}

/* ---- batches over agrad's threads ----------------------------------------------------------------- */
/* One element of a batch: fn(ctx, bi, scratch) does element bi's work, with scratch (run_batch's
 * bytes, the calling thread's own), and returns LAPACK's info for it (0: done).  It writes only
 * element bi's parts of the results and records no error (run_batch's caller does). */
typedef lapack_int (*batch_fn)(void *ctx, int64_t bi, void *scratch);

/* Runs fn on the count elements of a batch, each of about `work` multiply-adds, each whole on
 * one thread: over agrad's threads when there are several elements and work enough for a
 * fork (ag__threads_for) and BLAS runs on the calling thread (blas_single), else in order on
 * this one.  So every element computes as on one thread: the same results on any thread count.
 * Returns the info of the first element (lowest bi) that failed, its index in *failed, or 0;
 * LAPACK_WORK_MEMORY_ERROR (at *failed = 0) when the scratch cannot be allocated. */
static lapack_int run_batch(int64_t count, double work, size_t scratch, batch_fn fn, void *ctx, int64_t *failed) {
    double total = (double)count * work;
    int nt = count > 1 && blas_single ? ag__threads_for(total < 1e15 ? (int64_t)total : INT64_MAX) : 1;
    if (nt > count) nt = (int)count;
    size_t stride = (scratch + 63) / 64 * 64;
    char *buf = ag__alloc_n((int64_t)nt * (int64_t)stride + 1, 1);
    *failed = 0;
    if (!buf) return LAPACK_WORK_MEMORY_ERROR;
    int64_t first = count;
    lapack_int info = 0;
    if (nt <= 1)
        for (int64_t bi = 0; bi < count && !info; bi++) {
            info = fn(ctx, bi, buf);
            if (info) first = bi;
        }
    else {
#pragma omp parallel for num_threads(nt) schedule(dynamic)
        for (int64_t bi = 0; bi < count; bi++) {
            int64_t seen;
#pragma omp atomic read
            seen = first;
            if (bi > seen) continue; /* a failure before it: not needed */
            lapack_int e = fn(ctx, bi, buf + (size_t)omp_get_thread_num() * stride);
            if (e) {
#pragma omp critical /* unnamed: a named one exports a .gomp_critical_user_ symbol */
                if (bi < first) {
                    info = e;
#pragma omp atomic write
                    first = bi;
                }
            }
        }
    }
    ag__free(buf);
    if (info) *failed = first;
    return info;
}

/* AG_ERR_SHAPE naming op unless an m x n matrix (and its dims) fit lapack_int. */
static ag_status check_lapack(const char *op, int64_t m, int64_t n) {
    pthread_once(&blas_threads_once, blas_threads);
    int64_t mn;
    if (ag__mul_overflow(m, n, &mn) || mn > LAPACK_MAX)
        return ag__fail(AG_ERR_SHAPE, "%s: a %lld x %lld matrix is beyond LAPACK's int sizes (at most %lld elements)",
                        op, (long long)m, (long long)n, (long long)LAPACK_MAX);
    return AG_OK;
}

/* a is a float batch of matrices [..., m, n] (square when asked) that LAPACK can take. */
static ag_status check_matrix(const char *op, const ag_tensor *a, bool square) {
    char s[AG_SHAPE_STR];
    if (ag__check_float(op, a, NULL)) return AG_ERR_DTYPE;
    if (a->ndim < 2)
        return ag__fail(AG_ERR_SHAPE, "%s: expects a matrix or a batch of matrices [..., m, n], got %s", op,
                        ag__tshape(s, a));
    int64_t m = a->shape[a->ndim - 2], n = a->shape[a->ndim - 1];
    if (square && m != n)
        return ag__fail(AG_ERR_SHAPE, "%s: expects square matrices [..., n, n], got %s", op, ag__tshape(s, a));
    return check_lapack(op, m, n);
}

/* The broadcast batch dims of a and b (each less its last two dims) into nb/bshape;
 * AG_ERR_SHAPE naming op when they clash. */
static ag_status batch_broadcast(const char *op, const ag_tensor *a, const ag_tensor *b, int *nb, int64_t *bshape) {
    if (ag__broadcast_dims(a->ndim - 2, a->shape, b->ndim - 2, b->shape, nb, bshape) == 0) return AG_OK;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    return ag__fail(AG_ERR_SHAPE, "%s: the batch dimensions of %s and %s cannot be broadcast", op, ag__tshape(s1, a),
                    ag__tshape(s2, b));
}

/* shape = bshape (nb dims) followed by the k sizes in tail. */
static int join_shape(int nb, const int64_t *bshape, int k, const int64_t *tail, int64_t *shape) {
    memcpy(shape, bshape, sizeof(int64_t) * (size_t)nb);
    memcpy(shape + nb, tail, sizeof(int64_t) * (size_t)k);
    return nb + k;
}

/* A contiguous unowned copy of t broadcast to ndim/shape, in dtype (the caller
 * releases it); NULL on ENOMEM. */
static ag_tensor *work_copy(const ag_tensor *t, int ndim, const int64_t *shape, ag_dtype dtype) {
    ag_tensor *w = ag__new_unowned(dtype, ndim, shape, false);
    if (w) ag__copy_into(w, t);
    return w;
}

/* t itself (a new reference) when it is contiguous with shape ndim/shape (and in dtype), else its
 * work_copy in dtype (read_as: in its own): matrices that are only read (by a triangular solve) need
 * no copy.  NULL on ENOMEM. */
static ag_tensor *read_in(ag_tensor *t, int ndim, const int64_t *shape, ag_dtype dtype) {
    if (t->dtype == dtype && t->ndim == ndim && memcmp(t->shape, shape, sizeof(int64_t) * (size_t)ndim) == 0 &&
        ag__contig(t))
        return ag__retain(t);
    return work_copy(t, ndim, shape, dtype);
}
static ag_tensor *read_as(ag_tensor *t, int ndim, const int64_t *shape) { return read_in(t, ndim, shape, t->dtype); }

/* Whether the n float32/float64 values at p are all finite, in one pass that vectorises (a
 * NaN fails the comparison); ~10x the per-element conversion and isfinite it replaced. */
static bool all_finite(ag_dtype dt, const void *p, int64_t n) {
    int bad = 0;
    if (dt == AG_F32) {
        const float *x = p;
        _Pragma("omp simd reduction(| : bad)")
        for (int64_t i = 0; i < n; i++) bad |= !(fabsf(x[i]) <= FLT_MAX);
    } else {
        const double *x = p;
        _Pragma("omp simd reduction(| : bad)")
        for (int64_t i = 0; i < n; i++) bad |= !(fabs(x[i]) <= DBL_MAX);
    }
    return !bad;
}

/* AG_ERR_VALUE naming op and the batch element (of per elements each) when the work
 * tensor w holds a NaN or an infinity: LAPACK would turn either into NaN results
 * without a word (LAPACKE checks for NaN only). */
static ag_status check_finite(const char *op, const ag_tensor *w, int64_t per) {
    int64_t n = ag_numel(w);
    const char *p = ag__ptr(w);
    if (all_finite(w->dtype, p, n)) return AG_OK;
    for (int64_t i = 0; i < n; i++) {
        double v = w->dtype == AG_F32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
        if (!isfinite(v))
            return ag__fail(AG_ERR_VALUE, "%s: batch element %lld contains %s", op, (long long)(i / per),
                            isnan(v) ? "NaN" : "an infinity");
    }
    return AG_OK;
}

/* The columns [lo, hi) of row i of an n x n matrix in the triangle a triangular solve reads:
 * upper or lower, less the diagonal when unit. */
static void tri_cols(int64_t i, int64_t n, bool upper, bool unit, int64_t *lo, int64_t *hi) {
    *lo = upper ? i + unit : 0;
    *hi = upper ? n : i + 1 - unit;
}

/* check_finite of the triangle a triangular solve reads of each of the count n x n matrices of t
 * (upper or lower, less the diagonal when unit): the other one may hold anything.  Empty matrices
 * have nothing to check, however many (a batch of 2^50 of them is no work). */
static ag_status check_triangle(const char *op, const ag_tensor *t, int64_t n, int64_t count, bool upper, bool unit) {
    size_t es = ag_dtype_size(t->dtype);
    for (int64_t bi = 0; n > 0 && bi < count; bi++)
        for (int64_t i = 0; i < n; i++) {
            int64_t lo, hi;
            tri_cols(i, n, upper, unit, &lo, &hi);
            const char *row = ag__ptr(t) + (size_t)((bi * n + i) * n + lo) * es;
            if (hi > lo && !all_finite(t->dtype, row, hi - lo)) {
                double v = 0;
                for (int64_t j = 0; j < hi - lo && isfinite(v); j++)
                    v = t->dtype == AG_F32 ? (double)((const float *)row)[j] : ((const double *)row)[j];
                return ag__fail(AG_ERR_VALUE, "%s: batch element %lld contains %s", op, (long long)bi,
                                isnan(v) ? "NaN" : "an infinity");
            }
        }
    return AG_OK;
}

/* The statements of __VA_ARGS__ with T the element type of dt (float for float32, else double). */
#define BY_DTYPE(dt, T, ...)                \
    do {                                    \
        if ((dt) == AG_F32) {               \
            typedef float T;                \
            __VA_ARGS__                     \
        } else {                            \
            typedef double T;               \
            __VA_ARGS__                     \
        }                                   \
    } while (0)

/* Element i of a float32/float64 buffer, and its store. */
static inline double get(ag_dtype dt, const void *p, int64_t i) {
    return dt == AG_F32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}
static inline void put(ag_dtype dt, void *p, int64_t i, double v) {
    if (dt == AG_F32) ((float *)p)[i] = (float)v;
    else ((double *)p)[i] = v;
}

/* The address of matrix bi of a contiguous batch of matrices of count elements. */
static inline char *mat_at(const ag_tensor *t, int64_t bi, int64_t count) {
    return ag__ptr(t) + bi * count * (int64_t)ag_dtype_size(t->dtype);
}

/* The failure of LAPACK on batch element bi: a positive info is what the op says
 * (what, formatted with info), a negative one a NaN in the input (LAPACKE's check)
 * or LAPACKE's own allocation failure. */
static ag_status fail_element(const char *op, int64_t bi, lapack_int info, const char *what) {
    if (info == LAPACK_WORK_MEMORY_ERROR || info == LAPACK_TRANSPOSE_MEMORY_ERROR)
        return ag__fail(AG_ERR_NOMEM, "%s: out of memory in LAPACK (batch element %lld)", op, (long long)bi);
    if (info < 0) /* LAPACKE's NaN check names the matrix argument */
        return ag__fail(AG_ERR_VALUE, "%s: batch element %lld contains NaN (LAPACK info %d)", op, (long long)bi, (int)info);
    char w[160];
    snprintf(w, sizeof w, what, (int)info, (int)info); /* what may name info twice: "U[%d, %d]" */
    return ag__fail(AG_ERR_VALUE, "%s: batch element %lld %s", op, (long long)bi, w);
}

/* What getrf's positive info says (1-based index of the zero pivot). */
#define SINGULAR "is singular (U[%d, %d] of its LU factorisation is zero)"

/* ---- LAPACK in the tensor's dtype (row-major; uplo 'L' reads the lower triangle) ------------------ */
/* A row-major matrix is its transpose in column-major order, so the LU, triangular and
 * Cholesky routines run column-major (LAPACKE's _work entry points: LAPACK itself) on the
 * row-major buffer as it is: getrf factors Aᵀ (det Aᵀ = det A, and the zero pivots are the
 * same), getri of that factor gives (Aᵀ)⁻¹ column-major, A⁻¹ row-major, the solves take the
 * factor transposed, a row-major lower triangle is an upper one.  LAPACKE's row-major calls
 * transposed every matrix into a copy and back, and scanned it for NaN again (check_finite
 * has); at 64 solves of 32 x 32 that was a quarter of the time (docs/benchmarks.md, "Session
 * 10: linear algebra"). */
#define COL LAPACK_COL_MAJOR

/* The other triangle, or the other transposition. */
static char flip(char c) { return c == 'L' ? 'U' : c == 'U' ? 'L' : c == 'N' ? 'T' : 'N'; }

#if !AG_HAVE_CBLAS /* LAPACK's solves, column-major (with BLAS: trsm on the rows, below) */
/* dst [c, r] = src [r, c]ᵀ (row-major, elements of dt). */
static void transpose(ag_dtype dt, int64_t r, int64_t c, const void *src, void *dst) {
    if (dt == AG_F32)
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++) ((float *)dst)[j * r + i] = ((const float *)src)[i * c + j];
    else
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++) ((double *)dst)[j * r + i] = ((const double *)src)[i * c + j];
}

/* Runs solve (a column-major solve of n x k right-hand sides in b, leading dim n) on the
 * row-major b [n, k]: through a column-major copy unless k is 1 (then the same layout). */
typedef lapack_int (*col_solve)(ag_dtype dt, char c1, char c2, char c3, lapack_int n, lapack_int k, const void *a,
                                const lapack_int *piv, void *b);
static lapack_int on_rows(col_solve solve, ag_dtype dt, char c1, char c2, char c3, lapack_int n, lapack_int k,
                          const void *a, const lapack_int *piv, void *b) {
    if (k == 1) return solve(dt, c1, c2, c3, n, k, a, piv, b);
    void *cm = ag__alloc_n((int64_t)n * k + 1, ag_dtype_size(dt));
    if (!cm) return LAPACK_WORK_MEMORY_ERROR;
    transpose(dt, n, k, b, cm);
    lapack_int info = solve(dt, c1, c2, c3, n, k, a, piv, cm);
    if (!info) transpose(dt, k, n, cm, b);
    ag__free(cm);
    return info;
}
static lapack_int col_getrs(ag_dtype dt, char tr, char c2, char c3, lapack_int n, lapack_int k, const void *lu,
                            const lapack_int *piv, void *b) {
    (void)c2, (void)c3;
    return dt == AG_F32 ? LAPACKE_sgetrs_work(COL, tr, n, k, lu, n, piv, b, n)
                        : LAPACKE_dgetrs_work(COL, tr, n, k, lu, n, piv, b, n);
}
static lapack_int col_trtrs(ag_dtype dt, char uplo, char tr, char diag, lapack_int n, lapack_int k, const void *a,
                            const lapack_int *piv, void *b) {
    (void)piv;
    return dt == AG_F32 ? LAPACKE_strtrs_work(COL, uplo, tr, diag, n, k, a, n, b, n)
                        : LAPACKE_dtrtrs_work(COL, uplo, tr, diag, n, k, a, n, b, n);
}
static lapack_int col_potrs(ag_dtype dt, char uplo, char c2, char c3, lapack_int n, lapack_int k, const void *f,
                            const lapack_int *piv, void *b) {
    (void)c2, (void)c3, (void)piv;
    return dt == AG_F32 ? LAPACKE_spotrs_work(COL, uplo, n, k, f, n, b, n) : LAPACKE_dpotrs_work(COL, uplo, n, k, f, n, b, n);
}

#endif

/* The LU factors of Aᵀ (a holds A row-major; see above) and their pivots. */
static lapack_int x_getrf(ag_dtype dt, lapack_int n, void *a, lapack_int *piv) {
    const bool wide = lapack_widen(n, n, LAPACK_WIDE_MIN);
    return narrowed(wide, dt == AG_F32 ? LAPACKE_sgetrf_work(COL, n, n, a, n, piv) : LAPACKE_dgetrf_work(COL, n, n, a, n, piv));
}
#if AG_HAVE_CBLAS
/* B [n, k] = op(T)⁻¹·B for the triangle uplo of the row-major t (diag 'U': a unit diagonal),
 * op(T) = T (tr 'N') or Tᵀ ('T'): BLAS's trsm on the row-major buffers as they are (no copy of
 * B into column-major order and back, which LAPACK's solves need; see on_rows). */
static void trsm(ag_dtype dt, char uplo, char tr, char diag, lapack_int n, lapack_int k, const void *t, void *b) {
    if (n == 0 || k == 0) return;
    CBLAS_UPLO u = uplo == 'U' ? CblasUpper : CblasLower;
    CBLAS_TRANSPOSE o = tr == 'T' ? CblasTrans : CblasNoTrans;
    CBLAS_DIAG d = diag == 'U' ? CblasUnit : CblasNonUnit;
    bool wide = blas_widen(0.5 * n * n * k);
    if (dt == AG_F32) cblas_strsm(CblasRowMajor, CblasLeft, u, o, d, n, k, 1.0f, t, n, b, k);
    else cblas_dtrsm(CblasRowMajor, CblasLeft, u, o, d, n, k, 1.0, t, n, b, k);
    blas_narrow(wide);
}

/* The row interchanges of getrf's pivots piv on the rows of b [n, k]: in order (Pᵀ·B), or in
 * reverse order (P·B). */
static void swap_rows(ag_dtype dt, lapack_int n, lapack_int k, void *b, const lapack_int *piv, bool reverse) {
    size_t row = (size_t)k * ag_dtype_size(dt);
    char tmp[512];
    for (lapack_int t = 0; t < n; t++) {
        lapack_int i = reverse ? n - 1 - t : t, j = piv[i] - 1;
        if (j == i) continue;
        char *x = (char *)b + (size_t)i * row, *y = (char *)b + (size_t)j * row;
        for (size_t o = 0; o < row; o += sizeof tmp) { /* in pieces of tmp */
            size_t len = row - o < sizeof tmp ? row - o : sizeof tmp;
            memcpy(tmp, x + o, len);
            memcpy(x + o, y + o, len);
            memcpy(y + o, tmp, len);
        }
    }
}
#endif

/* B [n, k] = op(A)⁻¹·B, op(A) = A (tr 'N') or Aᵀ ('T'), from x_getrf's factors of Aᵀ.  With
 * BLAS: the interchanges and two trsm on the row-major buffers.  Aᵀ = P·L·U column-major is
 * the row-major buffer holding Uᵀ in its lower triangle and Lᵀ (unit) in its upper one, so
 * A = Uᵀ·Lᵀ·Pᵀ: A⁻¹·B = P·Lᵀ⁻¹·Uᵀ⁻¹·B and A⁻ᵀ·B = U⁻¹·L⁻¹·Pᵀ·B. */
static lapack_int x_getrs(ag_dtype dt, char tr, lapack_int n, lapack_int k, const void *lu, const lapack_int *piv,
                          void *b) {
#if AG_HAVE_CBLAS
    if (n == 0 || k == 0) return 0;
    if (tr == 'T') {
        swap_rows(dt, n, k, b, piv, false);
        trsm(dt, 'U', 'T', 'U', n, k, lu, b);
        trsm(dt, 'L', 'T', 'N', n, k, lu, b);
    } else {
        trsm(dt, 'L', 'N', 'N', n, k, lu, b);
        trsm(dt, 'U', 'N', 'U', n, k, lu, b);
        swap_rows(dt, n, k, b, piv, true);
    }
    return 0;
#else
    return on_rows(col_getrs, dt, flip(tr), 0, 0, n, k, lu, piv, b);
#endif
}
/* A⁻¹ row-major in place of x_getrf's factors of Aᵀ. */
static lapack_int x_getri(ag_dtype dt, lapack_int n, void *lu, const lapack_int *piv) {
    const bool wide = lapack_widen(n, n, GETRI_WIDE_MIN);
    return narrowed(wide, dt == AG_F32 ? LAPACKE_sgetri(COL, n, lu, n, piv) : LAPACKE_dgetri(COL, n, lu, n, piv));
}
/* B [n, k] = op(A)⁻¹·B for A's triangle uplo (diag 'U': a unit diagonal), op(A) = A (tr 'N') or Aᵀ ('T');
 * info i > 0 when A[i-1, i-1] is zero (not unit), as trtrs. */
static lapack_int x_trtrs(ag_dtype dt, char uplo, char tr, char diag, lapack_int n, lapack_int k, const void *a, void *b) {
#if AG_HAVE_CBLAS
    for (lapack_int i = 0; i < n && diag != 'U'; i++)
        if (get(dt, a, (int64_t)i * n + i) == 0) return i + 1;
    trsm(dt, uplo, tr, diag, n, k, a, b);
    return 0;
#else
    return on_rows(col_trtrs, dt, flip(uplo), flip(tr), diag, n, k, a, NULL, b);
#endif
}
/* The Cholesky factor in the triangle uplo of a, reading that triangle. */
static lapack_int x_potrf(ag_dtype dt, char uplo, lapack_int n, void *a) {
    const bool wide = lapack_widen(n, n, LAPACK_WIDE_MIN);
    return narrowed(wide, dt == AG_F32 ? LAPACKE_spotrf_work(COL, flip(uplo), n, a, n)
                           : LAPACKE_dpotrf_work(COL, flip(uplo), n, a, n));
}
/* B [n, k] = (F·Fᵀ)⁻¹·B for the lower factor F in l (uplo 'L'), or (Fᵀ·F)⁻¹·B for an upper one. */
static lapack_int x_potrs(ag_dtype dt, char uplo, lapack_int n, lapack_int k, const void *l, void *b) {
#if AG_HAVE_CBLAS
    trsm(dt, uplo, uplo == 'L' ? 'N' : 'T', 'N', n, k, l, b);
    trsm(dt, uplo, uplo == 'L' ? 'T' : 'N', 'N', n, k, l, b);
    return 0;
#else
    return on_rows(col_potrs, dt, flip(uplo), 0, 0, n, k, l, NULL, b);
#endif
}
/* The inverse of a's triangle uplo (not unit) in place. */
static lapack_int x_trtri(ag_dtype dt, char uplo, lapack_int n, void *a) {
    return dt == AG_F32 ? LAPACKE_strtri_work(COL, flip(uplo), 'N', n, a, n) : LAPACKE_dtrtri_work(COL, flip(uplo), 'N', n, a, n);
}
/* ---- the decompositions: LAPACK column-major on the row-major buffers, one workspace a batch ------- */
/* LAPACKE's row-major syevd, geqrf, orgqr and gesdd transposed each matrix into a copy and back,
 * scanned it for NaN again (check_finite has) and queried and allocated a workspace on every call.
 * Each batch now queries LAPACK once (lwork = -1) and each thread of run_batch works in its own
 * scratch; a symmetric matrix is its own transpose, gesdd takes the transposed problem (below), and
 * qr transposes once in and once out. */

/* dst [c, r] = src [r, c]ᵀ, row-major with row strides ls (src) and ld (dst), elements of dt: in tiles
 * of 16 x 16, so that neither side is walked a row apart element by element. */
static void transpose_to(ag_dtype dt, int64_t r, int64_t c, const void *src, int64_t ls, void *dst, int64_t ld) {
    BY_DTYPE(dt, T, {
        const T *s = src;
        T *d = dst;
        for (int64_t i0 = 0; i0 < r; i0 += 16)
            for (int64_t j0 = 0; j0 < c; j0 += 16) {
                int64_t i1 = i0 + 16 < r ? i0 + 16 : r, j1 = j0 + 16 < c ? j0 + 16 : c;
                for (int64_t j = j0; j < j1; j++)
                    for (int64_t i = i0; i < i1; i++) d[j * ld + i] = s[i * ls + j];
            }
    });
}

/* The n x n row-major a transposed in place, in tiles of 16 x 16 (pairs of tiles swapped). */
static void transpose_square(ag_dtype dt, int64_t n, void *a) {
    BY_DTYPE(dt, T, {
        T *x = a;
        for (int64_t i0 = 0; i0 < n; i0 += 16)
            for (int64_t j0 = i0; j0 < n; j0 += 16) {
                int64_t i1 = i0 + 16 < n ? i0 + 16 : n, j1 = j0 + 16 < n ? j0 + 16 : n;
                for (int64_t i = i0; i < i1; i++)
                    for (int64_t j = j0 > i ? j0 : i + 1; j < j1; j++) {
                        T t = x[i * n + j];
                        x[i * n + j] = x[j * n + i];
                        x[j * n + i] = t;
                    }
            }
    });
}

/* The workspace size a LAPACK query left in w[0] (elements of dt), rounded up (a float32 answer
 * may have rounded down), or -1 when it does not fit lapack_int (or is not a number). */
static lapack_int lwork_of(ag_dtype dt, const void *w) {
    float f;
    double d;
    if (dt == AG_F32) memcpy(&f, w, sizeof f), d = f;
    else memcpy(&d, w, sizeof d);
    double v = ceil(d * (1 + 1e-6)) + 1;
    return v >= 1 && v < (double)LAPACK_MAX ? (lapack_int)v : -1;
}

/* Bytes of scratch for lwork elements of dt then ni lapack_int, the ints 8-byte aligned. */
static size_t work_bytes(ag_dtype dt, lapack_int lwork, int64_t ni) {
    return ((size_t)lwork * ag_dtype_size(dt) + 7) / 8 * 8 + (size_t)ni * sizeof(lapack_int);
}

/* The eigenvalues w (ascending) and, jobz 'V', eigenvectors of the symmetric n x n a (triangle uplo of
 * the row-major buffer: the other one of the column-major matrix, the same matrix); the vectors
 * come out as columns of the column-major matrix, rows of the buffer (a transpose_square makes them
 * columns).  work of lwork elements, iwork of liwork (-1 and -1: the query). */
static lapack_int x_syevd(ag_dtype dt, char jobz, char uplo, lapack_int n, void *a, void *w, void *work,
                          lapack_int lwork, lapack_int *iwork, lapack_int liwork) {
    const bool wide = lapack_widen(n, n, LAPACK_WIDE_MIN);
    return narrowed(wide, dt == AG_F32 ? LAPACKE_ssyevd_work(COL, jobz, flip(uplo), n, a, n, w, work, lwork, iwork, liwork)
                           : LAPACKE_dsyevd_work(COL, jobz, flip(uplo), n, a, n, w, work, lwork, iwork, liwork));
}

/* The QR factors of the column-major m x n a (leading dim m): R above the diagonal, the reflectors
 * below, their scales in tau; work of lwork elements (-1: the query). */
static lapack_int x_geqrf(ag_dtype dt, lapack_int m, lapack_int n, void *a, void *tau, void *work, lapack_int lwork) {
    const bool wide = lapack_widen(m, n, LAPACK_WIDE_MIN);
    return narrowed(wide, dt == AG_F32 ? LAPACKE_sgeqrf_work(COL, m, n, a, m, tau, work, lwork)
                           : LAPACKE_dgeqrf_work(COL, m, n, a, m, tau, work, lwork));
}
/* The column-major m x c matrix Q (c ≥ k) of the k reflectors in a's first columns (leading dim m). */
static lapack_int x_orgqr(ag_dtype dt, lapack_int m, lapack_int c, lapack_int k, void *a, const void *tau, void *work,
                          lapack_int lwork) {
    const bool wide = lapack_widen(m, c, LAPACK_WIDE_MIN);
    return narrowed(wide, dt == AG_F32 ? LAPACKE_sorgqr_work(COL, m, c, k, a, m, tau, work, lwork)
                           : LAPACKE_dorgqr_work(COL, m, c, k, a, m, tau, work, lwork));
}
/* gesdd, column-major: the M x N a (leading dim M) = U·S·Vᵀ, jobz 'S' (U [M, k], Vᵀ [k, N]), 'A' (U
 * [M, M], Vᵀ [N, N]) or 'N' (singular values only: u and vt unread); work of lwork elements (-1: the
 * query), iwork of 8·min(M, N). */
static lapack_int x_gesdd(ag_dtype dt, char jobz, lapack_int M, lapack_int N, void *a, void *s, void *u, lapack_int ldu,
                          void *vt, lapack_int ldvt, void *work, lapack_int lwork, lapack_int *iwork) {
    const bool wide = lapack_widen(M, N, LAPACK_WIDE_MIN);
    return narrowed(wide, dt == AG_F32 ? LAPACKE_sgesdd_work(COL, jobz, M, N, a, M, s, u, ldu, vt, ldvt, work, lwork, iwork)
                           : LAPACKE_dgesdd_work(COL, jobz, M, N, a, M, s, u, ldu, vt, ldvt, work, lwork, iwork));
}

/* ---- float64 helpers of the adjoints --------------------------------------------------------------- */

/* C [m, p] = op(A)·op(B) with op(A) [m, k], op(B) [k, p], row-major, transposed when ta/tb,
 * elements of T: a loop, for small products (at most 4096 multiply-adds) or without BLAS. */
#define MM_LOOP(T, m, k, p, A, ta, B, tb, C)                                                      \
    do {                                                                                          \
        memset(C, 0, sizeof(T) * (size_t)((m) * (p)));                                            \
        for (int64_t i = 0; i < (m); i++)                                                         \
            for (int64_t l = 0; l < (k); l++) {                                                   \
                T a_ = (ta) ? (A)[l * (m) + i] : (A)[i * (k) + l];                                \
                if (a_ == 0) continue;                                                            \
                T *c_ = (C) + i * (p);                                                            \
                if (tb)                                                                           \
                    for (int64_t j = 0; j < (p); j++) c_[j] += a_ * (B)[j * (k) + l];             \
                else                                                                              \
                    for (int64_t j = 0; j < (p); j++) c_[j] += a_ * (B)[l * (p) + j];             \
            }                                                                                     \
    } while (0)

/* Whether BLAS takes the product (each dim a matrix dim, within lapack_int). */
static bool mm_blas(int64_t m, int64_t k, int64_t p) {
#if AG_HAVE_CBLAS
    return m > 0 && p > 0 && k > 0 && (double)m * (double)k * (double)p > 4096;
#else
    (void)m, (void)k, (void)p;
    return false;
#endif
}

/* C [m, p] = op(A)·op(B) in float64 (as MM_LOOP): BLAS's dgemm when mm_blas. */
static void mm(int64_t m, int64_t k, int64_t p, const double *A, bool ta, const double *B, bool tb, double *C) {
#if AG_HAVE_CBLAS
    if (mm_blas(m, k, p)) {
        bool wide = blas_widen((double)m * (double)k * (double)p);
        cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)p,
                    (blasint)k, 1.0, A, (blasint)(ta ? m : k), B, (blasint)(tb ? k : p), 0.0, C, (blasint)p);
        blas_narrow(wide);
        return;
    }
#endif
    MM_LOOP(double, m, k, p, A, ta, B, tb, C);
}

/* mm in dtype dt (float32: sgemm, as the forward computes; float64: mm). */
static void mm_dt(ag_dtype dt, int64_t m, int64_t k, int64_t p, const void *A, bool ta, const void *B, bool tb, void *C) {
    if (dt == AG_F64) {
        mm(m, k, p, A, ta, B, tb, C);
        return;
    }
    const float *a = A, *b = B;
    float *c = C;
#if AG_HAVE_CBLAS
    if (mm_blas(m, k, p)) {
        bool wide = blas_widen((double)m * (double)k * (double)p);
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)p,
                    (blasint)k, 1.0f, a, (blasint)(ta ? m : k), b, (blasint)(tb ? k : p), 0.0f, c, (blasint)p);
        blas_narrow(wide);
        return;
    }
#endif
    MM_LOOP(float, m, k, p, a, ta, b, tb, c);
}

/* The float64 work copy of t broadcast to ndim/shape (unowned); NULL on ENOMEM. */
static ag_tensor *f64(const ag_tensor *t, int ndim, const int64_t *shape) { return work_copy(t, ndim, shape, AG_F64); }
static double *dp(const ag_tensor *t) { return (double *)ag__ptr(t); }

/* Gives the float64 gradient g (consumed; shaped as in broadcast to the batch) to
 * input in, converted to its dtype. */
static ag_status give(ag_tensor *in, ag_tensor *g) {
    if (!g) return AG_ERR_NOMEM;
    if (in->dtype != AG_F64) {
        ag_tensor *c = work_copy(g, g->ndim, g->shape, in->dtype);
        ag_release(g);
        if (!c) return AG_ERR_NOMEM;
        g = c;
    }
    return ag__accumulate(in, g);
}

/* Releases up to four work tensors and returns st. */
static ag_status done(ag_status st, ag_tensor *a, ag_tensor *b, ag_tensor *c, ag_tensor *d) {
    ag_release(a);
    ag_release(b);
    ag_release(c);
    ag_release(d);
    return st;
}

/* ---- helpers of the rules written in agrad ops (backward_graph, jvp) --------------------------------- */
/* They compute with public, recorded agrad ops in the tensors' dtype, inside the
 * scope the engine opens for a rule; a NULL argument gives NULL (its failure is
 * recorded), so that a rule can chain them and test the result once. */

/* xᵀ over the last two dims. */
static ag_tensor *mT(ag_tensor *x) { return x ? ag_transpose(x, -2, -1) : NULL; }

/* Per-matrix values x [...] as [..., 1, 1], to scale whole matrices. */
static ag_tensor *per_matrix(ag_tensor *x) { return ag_unsqueeze(ag_unsqueeze(x, -1), -1); }

/* The traces of the matrices x [..., n, n]: [...]. */
static ag_tensor *trace(ag_tensor *x) { return ag_sum_dim(ag_diagonal(x, 0, -2, -1), -1, false); }

/* (x + xᵀ)/2 */
static ag_tensor *sym(ag_tensor *x) { return ag_mul_scalar(ag_add(x, mT(x)), 0.5); }

/* x - xᵀ */
static ag_tensor *skew(ag_tensor *x) { return ag_sub(x, mT(x)); }

/* [x ≠ 0] as 0/1 of x's dtype (not differentiable: a mask). */
static ag_tensor *nonzero_mask(ag_tensor *x) {
    return x ? ag_to_dtype(ag_ne(x, ag_scalar(0, x->dtype)), x->dtype) : NULL;
}

/* 1/e where e ≠ 0, else 0 (the diagonal of a matrix of gaps, and any repeated value). */
static ag_tensor *inverse_gaps(ag_tensor *e) {
    ag_tensor *nz = nonzero_mask(e);
    return ag_mul(ag_reciprocal(ag_add(e, ag_rsub_scalar(1, nz))), nz);
}

/* x [..., r, c] as [..., r·c] (the layout of a packed result). */
static ag_tensor *flat(ag_tensor *x) {
    if (!x) return NULL;
    ag_shape s = ag_shape_of(x);
    s.dim[s.ndim - 2] *= s.dim[s.ndim - 1];
    s.ndim--;
    return ag_reshape(x, s);
}

/* A rule's result g into gin's slot: AG_OK, or the failure that made g NULL. */
static ag_status gave(ag_tensor **slot, ag_tensor *g) {
    *slot = g;
    return g ? AG_OK : ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
}

/* The status of a rule that made t (NULL: its recorded failure). */
static ag_status made(const ag_tensor *t) { return t ? AG_OK : ag_last_status() ? ag_last_status() : AG_ERR_NOMEM; }

/* True if any element of t is not zero (t read, not recorded). */
static bool any_nonzero_t(const ag_tensor *t) {
    int64_t n = ag_numel(t);
    ag_tensor *w = n ? f64(t, t->ndim, t->shape) : NULL;
    bool any = false;
    for (int64_t i = 0; w && i < n && !any; i++) any = dp(w)[i] != 0;
    ag_release(w);
    return any;
}

/* The first batch element of the values v [..., k] holding a zero, or -1 (v read, not recorded). */
static int64_t first_zero(const ag_tensor *v) {
    int64_t k = v->shape[v->ndim - 1], n = ag_numel(v), at = -1;
    ag_tensor *w = n ? f64(v, v->ndim, v->shape) : NULL;
    for (int64_t i = 0; w && i < n && at < 0; i++)
        if (dp(w)[i] == 0) at = i / k;
    ag_release(w);
    return at;
}

/* AG_ERR_VALUE naming op where the singular values s have a zero (whose inverse the
 * singular vectors' rules take beyond the square part), as the first-order adjoint. */
static ag_status check_zero_singular(const char *op, const ag_tensor *s) {
    int64_t bi = first_zero(s);
    if (bi < 0) return AG_OK;
    return ag__fail(AG_ERR_VALUE, "%s: batch element %lld has a zero singular value: the gradient through its singular "
                    "vectors is not defined (as in PyTorch)", op, (long long)bi);
}

/* AG_ERR_VALUE naming op where two of the values v [..., k] are equal (a zero gap)
 * under a nonzero num[..., i, j], i ≠ j: the eigenvalues (eig) or singular values
 * whose gaps the eigenvectors' or singular vectors' rules divide by.  The first-order
 * adjoints fail alike; PyTorch gives inf or NaN. */
static ag_status check_repeated(const char *op, bool eig, ag_tensor *v, ag_tensor *num) {
    int64_t k = v->shape[v->ndim - 1], count = k ? ag_numel(num) / (k * k) : 0;
    ag_tensor *vv = f64(v, v->ndim, v->shape), *nn = f64(num, num->ndim, num->shape);
    ag_status st = vv && nn ? AG_OK : AG_ERR_NOMEM;
    for (int64_t bi = 0; bi < count && !st; bi++)
        for (int64_t i = 0; i < k && !st; i++)
            for (int64_t j = 0; j < k && !st; j++) {
                const double *x = dp(vv) + bi * k;
                if (i == j || x[i] != x[j] || dp(nn)[bi * k * k + i * k + j] == 0) continue;
                st = eig ? ag__fail(AG_ERR_VALUE, "%s: batch element %lld has the repeated eigenvalue %g (eigenvalues %lld "
                                    "and %lld): the eigenvectors' gradient is not defined there (as in PyTorch); use "
                                    "eigenvalues only, or a function of the eigenspace",
                                    op, (long long)bi, x[i], (long long)i, (long long)j)
                         : ag__fail(AG_ERR_VALUE, "%s: batch element %lld has the repeated singular value %g (%lld and %lld): "
                                    "the singular vectors' gradient is not defined there (as in PyTorch)",
                                    op, (long long)bi, x[i], (long long)i, (long long)j);
            }
    ag_release(vv);
    ag_release(nn);
    return st;
}

/* The start the solves with a square matrix share (solve, solve_triangular, cholesky_solve):
 * checks that m [..., n, n] (named mname in messages) and B [..., n, k] fit, broadcasts their
 * batch dims, and returns y, B copied over that batch (the solution's storage; owned), with
 * *work, m copied over the same batch (for LAPACK to overwrite; with read_only, m itself when
 * that is its layout, read_as; the caller releases it), and *n, *k and *count (the batch
 * elements).  NULL with the error recorded. */
static ag_tensor *solve_setup(const char *op, const char *mname, ag_tensor *m, ag_tensor *b, bool read_only,
                              ag_tensor **work, int64_t *n, int64_t *k, int64_t *count) {
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    *work = NULL;
    if (check_matrix(op, m, true) || check_matrix(op, b, false)) return NULL;
    *n = m->shape[m->ndim - 1], *k = b->shape[b->ndim - 1];
    if (b->shape[b->ndim - 2] != *n)
        return ag__fail_null(AG_ERR_SHAPE, "%s: %s %s and B %s: B needs %lld rows", op, mname, ag__tshape(s1, m),
                             ag__tshape(s2, b), (long long)*n);
    int nb;
    int64_t bshape[AG_MAX_DIMS], shape[AG_MAX_DIMS], mshape[AG_MAX_DIMS];
    if (batch_broadcast(op, m, b, &nb, bshape)) return NULL;
    int nd = join_shape(nb, bshape, 2, (int64_t[]){*n, *k}, shape);
    join_shape(nb, bshape, 2, (int64_t[]){*n, *n}, mshape);
    if (ag__check_alloc(op, nd, shape, b->dtype) || ag__check_alloc(op, nd, mshape, m->dtype)) return NULL;
    ag_tensor *y = ag__new(b->dtype, nd, shape);
    *work = !y ? NULL : read_only ? read_as(m, nd, mshape) : work_copy(m, nd, mshape, m->dtype);
    if (!*work) {
        ag__discard(y);
        return NULL;
    }
    ag__copy_into(y, b);
    *count = ag__numel(nb, bshape);
    return y;
}

/* ---- LU factors kept for the adjoints (solve, det, slogdet) ----------------------------------------- */
/* The forward's LU factors (x_getrf's, of Aᵀ) and pivots of count matrices n x n, kept as the
 * node's saved tensor [count, n + 1, n] in A's dtype (row n: the pivots, exact as floats since
 * n² fits lapack_int), so that the adjoint solves with them instead of factorising A again,
 * as PyTorch's linalg_solve_ex/lu_factor_ex adjoints do.  NULL on ENOMEM (recorded). */
static ag_tensor *lu_keep_new(ag_dtype dt, int64_t count, int64_t n) {
    return ag__new_unowned(dt, 3, (int64_t[]){count, n + 1, n}, false);
}

/* Batch element bi's factors lu (n x n, in kept's dtype) and pivots into kept. */
static void lu_keep(ag_tensor *kept, int64_t bi, int64_t n, const void *lu, const lapack_int *piv) {
    char *blk = mat_at(kept, bi, (n + 1) * n);
    memcpy(blk, lu, (size_t)(n * n) * ag_dtype_size(kept->dtype));
    for (int64_t i = 0; i < n; i++) put(kept->dtype, blk, n * n + i, (double)piv[i]);
}

/* Batch element bi of the kept factors: its factors (returned, n x n in kept's dtype, for
 * x_getrs) and its pivots into piv.  The adjoints solve with them in that dtype: a float32
 * gradient as accurate as its forward (and PyTorch's), with no float64 copies. */
static char *lu_kept(const ag_tensor *kept, int64_t bi, int64_t n, lapack_int *piv) {
    char *blk = mat_at(kept, bi, (n + 1) * n);
    for (int64_t i = 0; i < n; i++) piv[i] = (lapack_int)get(kept->dtype, blk, n * n + i);
    return blk;
}

/* x [n] (elements of dt) = -x. */
static void negate(ag_dtype dt, void *x, int64_t n) {
    if (dt == AG_F32)
        for (int64_t i = 0; i < n; i++) ((float *)x)[i] = -((float *)x)[i];
    else
        for (int64_t i = 0; i < n; i++) ((double *)x)[i] = -((double *)x)[i];
}

/* G [n, n] (elements of dt) = c·A⁻ᵀ from the kept factors L, piv of A: a solve of Aᵀ·G = c·I;
 * x_getrs's info. */
static lapack_int scaled_inverse_t(ag_dtype dt, int64_t n, double c, const void *L, const lapack_int *piv, void *G) {
    memset(G, 0, (size_t)(n * n) * ag_dtype_size(dt));
    for (int64_t i = 0; i < n; i++) put(dt, G, i * n + i, c);
    return x_getrs(dt, 'T', (lapack_int)n, (lapack_int)n, L, piv, G);
}

/* The operands of a batch's work (run_batch's ctx; each batch_fn says what it reads of them). */
struct batch_job {
    ag_dtype dt;
    int64_t n, k, count; /* matrices n x n, right-hand sides n x k, count of them */
    bool upper, unit;
    ag_tensor *a, *b, *c, *d;
    double *sld; /* lu_logdet's sign, log|det| and det (count each) */
    char *vals;  /* eigen's eigenvalues */
    const double *dets; /* det's determinants */
    char uplo;
};

/* A batch of decompositions (eigen, qr_packed, singular), run by run_batch: the matrices of a
 * [m, n] (k = min(m, n)) into the packed results y (total elements a matrix) or the values vals;
 * LAPACK's workspace sizes from one query; each thread's scratch holds work (lwork elements of
 * dt) then what the routine needs besides (work_bytes). */
struct decomp_job {
    ag_dtype dt;
    char jobz, uplo;
    int64_t m, n, k, c; /* c: the columns of qr's Q and svd's U, eigen's stride of vals */
    int64_t total;
    lapack_int lwork, liwork;
    const ag_tensor *a; /* read (qr) or overwritten (eigen, singular: work copies) */
    ag_tensor *y;
    char *vals;
};

/* The ints after the lwork elements of scratch (work_bytes). */
static lapack_int *work_ints(const struct decomp_job *j, void *scratch) {
    return (lapack_int *)((char *)scratch + ((size_t)j->lwork * ag_dtype_size(j->dt) + 7) / 8 * 8);
}

/* The workspace sizes a query left (lwork from w, liwork from iw when liw) into j; AG_ERR_SHAPE naming op
 * when the query failed or they do not fit lapack_int. */
static ag_status take_query(const char *op, struct decomp_job *j, lapack_int info, const void *w, const lapack_int *iw) {
    j->lwork = info ? -1 : lwork_of(j->dt, w);
    if (iw) j->liwork = info || iw[0] < 1 ? -1 : iw[0];
    if (j->lwork < 0 || (iw && j->liwork < 0))
        return ag__fail(AG_ERR_SHAPE, "%s: a %lld x %lld matrix needs a LAPACK workspace beyond its int sizes", op,
                        (long long)j->m, (long long)j->n);
    return AG_OK;
}

/* Element bi of solve's forward: the factors of a (in place), kept into c (lu_keep) when c, then
 * the solve of b's right-hand sides; piv its pivots (n lapack_int). */
static lapack_int lu_solve_one(void *ctx, int64_t bi, void *piv) {
    const struct batch_job *j = ctx;
    int64_t n = j->n;
    char *m = mat_at(j->a, bi, n * n);
    lapack_int info = x_getrf(j->dt, (lapack_int)n, m, piv);
    if (info == 0 && j->c) lu_keep(j->c, bi, n, m, piv);
    if (info == 0 && j->k > 0) info = x_getrs(j->dt, 'N', (lapack_int)n, (lapack_int)j->k, m, piv, mat_at(j->b, bi, n * j->k));
    return info;
}

/* Element bi of solve's adjoint: b's dX solved by the kept factors c of A (dB = A⁻ᵀ·dX, in place),
 * then d's dA = -dB·Xᵀ (X: a) when d; piv the pivots. */
static lapack_int lu_solve_back_one(void *ctx, int64_t bi, void *piv) {
    const struct batch_job *j = ctx;
    int64_t n = j->n, k = j->k;
    char *L = lu_kept(j->c, bi, n, piv), *G = mat_at(j->b, bi, n * k);
    lapack_int info = x_getrs(j->dt, 'T', (lapack_int)n, (lapack_int)k, L, piv, G);
    if (!info && j->d) {
        char *GA = mat_at(j->d, bi, n * n);
        mm_dt(j->dt, n, k, n, G, false, mat_at(j->a, bi, n * k), true, GA);
        negate(j->dt, GA, n * n);
    }
    return info;
}

/* ---- solve ----------------------------------------------------------------------------------------- */
static ag_status solve_backward(ag_tensor *out, ag_tensor *gout);
static ag_tensor *solve_jvp(ag_tensor *out, ag_tensor *const *tin);
static ag_status solve_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
/* X = A⁻¹·B;  dB = A⁻ᵀ·dX, dA = -dB·Xᵀ;  tangent dX = A⁻¹·(dB - dA·X) */
static const ag_op op_solve = {.name = "linalg_solve", .grad_fn = "LinalgSolveExBackward0", .backward = solve_backward,
                               .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                               .math = "X = A⁻¹·B (LU);  dB = A⁻ᵀ·dX, dA = -dB·Xᵀ",
                               .backward_graph = solve_backward_graph, .jvp = solve_jvp,
                               .tangent = "Ẋ = A⁻¹·(Ḃ - Ȧ·X)"};

/* B [..., n, k] (the matrix form). */
static ag_tensor *solve_matrix(ag_tensor *a, ag_tensor *b) {
    const char *op = "linalg_solve";
    if (!a || !b) return NULL; /* a failed operand of a rule (its error recorded) */
    ag_tensor *lu;
    int64_t n, k, count;
    ag_tensor *y = solve_setup(op, "A", a, b, false, &lu, &n, &k, &count);
    if (!y) return NULL;
    ag_tensor *in[2] = {a, b};
    ag_tensor *kept = ag__needs_grad(in, 2) ? lu_keep_new(a->dtype, count, n) : NULL;
    ag_status st = kept || !ag__needs_grad(in, 2) ? check_finite(op, lu, n * n) : AG_ERR_NOMEM;
    if (!st) st = check_finite(op, y, n * k);
    struct batch_job job = {.dt = a->dtype, .n = n, .k = k, .count = count, .a = lu, .b = y, .c = kept};
    int64_t bi = 0;
    lapack_int info = st || n == 0 ? 0 : run_batch(count, (double)n * n * (n + k), (size_t)(n + 1) * sizeof(lapack_int),
                                                  lu_solve_one, &job, &bi);
    if (info) st = fail_element(op, bi, info, SINGULAR);
    ag_release(lu);
    if (st) {
        ag_release(kept);
        ag__discard(y);
        return NULL;
    }
    if (kept && !ag__record_saved(y, &op_solve, in, 2, kept)) return NULL;
    return y;
}

/* dB = A⁻ᵀ·dX (the forward's LU factors), dA = -dB·Xᵀ, over the output's batch, in the dtype. */
static ag_status solve_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *a = out->in[0], *b = out->in[1];
    ag_dtype dt = out->saved->dtype;
    int nd = out->ndim, nb = nd - 2;
    int64_t n = out->shape[nd - 2], k = out->shape[nd - 1], ashape[AG_MAX_DIMS];
    join_shape(nb, out->shape, 2, (int64_t[]){n, n}, ashape);
    ag_tensor *gb = work_copy(gout, nd, out->shape, dt);
    ag_tensor *ga = ag__wants(out, 0) ? ag__new_unowned(dt, nd, ashape, false) : NULL;
    if (!gb || (ag__wants(out, 0) && !ga)) return done(AG_ERR_NOMEM, gb, ga, NULL, NULL);
    int64_t count = ag__numel(nb, out->shape), bi = 0;
    struct batch_job job = {.dt = dt, .n = n, .k = k, .count = count, .a = out, .b = gb, .c = out->saved, .d = ga};
    lapack_int info = n ? run_batch(count, (double)n * n * k * 2, (size_t)(n + 1) * sizeof(lapack_int), lu_solve_back_one,
                                    &job, &bi) : 0;
    ag_status st = info ? fail_element("linalg_solve: backward", bi, info, SINGULAR) : AG_OK;
    if (!st && ga) st = ag__accumulate(a, ga), ga = NULL;
    if (!st && ag__wants(out, 1)) st = ag__accumulate(b, gb), gb = NULL;
    return done(st, gb, ga, NULL, NULL);
}

ag_tensor *ag_linalg_solve(ag_tensor *a, ag_tensor *b) {
    AG_CHECK_HANDLES(NULL, "linalg_solve", a, b);
    if (!a || !b) return NULL;
    if (ag__check_float("linalg_solve", a, b)) return NULL;
    /* B is a vector when 1-D, or [..., n] with exactly A's batch dims (torch.linalg.solve's rule). */
    bool vector = b->ndim == 1 || (a->ndim >= 2 && b->ndim == a->ndim - 1 &&
                                   memcmp(b->shape, a->shape, sizeof(int64_t) * (size_t)(a->ndim - 1)) == 0);
    if (!vector) return solve_matrix(a, b);
    if (ag__composite_begin("linalg_solve")) return NULL;
    ag_tensor *x = ag_unsqueeze(b, -1);
    x = x ? solve_matrix(a, x) : NULL;
    return ag__composite_end(x ? ag_squeeze(x, -1) : NULL);
}

ag_tensor *ag_linalg_solve_ex(ag_tensor *a, ag_tensor *b, bool left) {
    if (left) return ag_linalg_solve(a, b);
    AG_CHECK_HANDLES(NULL, "linalg_solve", a, b);
    if (!a || !b) return NULL;
    if (a->ndim < 2) return ag_linalg_solve(a, b); /* its message */
    bool vector = b->ndim == 1 || (b->ndim == a->ndim - 1 &&
                                   memcmp(b->shape, a->shape, sizeof(int64_t) * (size_t)(a->ndim - 1)) == 0);
    if (vector) { /* PyTorch 1.13 takes it as a column, whose X·A = B has no solution */
        char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "linalg_solve: with left=false B must be a matrix [..., k, n], got %s for A %s",
                             ag__tshape(s1, b), ag__tshape(s2, a));
    }
    if (ag__composite_begin("linalg_solve")) return NULL;
    /* X·A = B:  X = solve(Aᵀ, Bᵀ)ᵀ */
    ag_tensor *x = ag_linalg_solve(ag_transpose(a, -1, -2), ag_transpose(b, -1, -2));
    return ag__composite_end(x ? ag_transpose(x, -1, -2) : NULL);
}

/* dB = solve(Aᵀ, dX), dA = -dB·Xᵀ (solve_matrix records itself) */
static ag_status solve_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *at = mT(out->in[0]), *gb = at ? solve_matrix(at, gout) : NULL;
    if (!gb) return made(gb);
    if (ag__wants(out, 1)) gin[1] = gb;
    return ag__wants(out, 0) ? gave(&gin[0], ag_neg(ag_matmul(gb, mT(out)))) : AG_OK;
}

/* dX = A⁻¹·(dB - dA·X), in differentiable ops (solve_matrix records itself). */
static ag_tensor *solve_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *rhs = tin[1];
    if (tin[0]) rhs = rhs ? ag_sub(rhs, ag_matmul(tin[0], out)) : ag_neg(ag_matmul(tin[0], out));
    return rhs ? solve_matrix(out->in[0], rhs) : NULL;
}

/* ---- solve_triangular ------------------------------------------------------------------------------ */
static ag_status solve_triangular_backward(ag_tensor *out, ag_tensor *gout);
static ag_status solve_triangular_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *solve_triangular_jvp(ag_tensor *out, ag_tensor *const *tin);
/* tangent dX = A⁻¹·(dB - tri(dA)·X) */
/* X = A⁻¹·B, A triangular;  dB = A⁻ᵀ·dX, dA = tri(-dB·Xᵀ), tri: A's triangle (less the diagonal when unitriangular) */
static const ag_op op_solve_triangular = {.name = "linalg_solve_triangular",
                                          .grad_fn = "LinalgSolveTriangularBackward0",
                                          .backward = solve_triangular_backward, .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                                          .math = "X = A⁻¹·B, A triangular (trtrs);  "
                                                  "dB = A⁻ᵀ·dX, dA = -dB·Xᵀ on the triangle A is read from (without "
                                                  "the diagonal when unitriangular)",
                                          .backward_graph = solve_triangular_backward_graph,
                                          .jvp = solve_triangular_jvp,
                                          .tangent = "Ẋ = A⁻¹·(Ḃ - tri(Ȧ)·X), tri(Ȧ) the triangle A is read from "
                                                     "(unit diagonal: without it)"};

/* The part of x in the triangle a triangular solve reads: upper or lower, less the
 * diagonal when unit. */
static ag_tensor *triangle(ag_tensor *x, bool upper, bool unit) {
    return upper ? ag_triu(x, unit ? 1 : 0) : ag_tril(x, unit ? -1 : 0);
}

/* Element bi of solve_triangular's forward: b's right-hand sides solved by a's triangle. */
static lapack_int tri_solve_one(void *ctx, int64_t bi, void *scratch) {
    const struct batch_job *j = ctx;
    (void)scratch;
    return x_trtrs(j->dt, j->upper ? 'U' : 'L', 'N', j->unit ? 'U' : 'N', (lapack_int)j->n, (lapack_int)j->k,
                   mat_at(j->a, bi, j->n * j->n), mat_at(j->b, bi, j->n * j->k));
}

/* A⁻¹·B for triangular A [..., n, n] (its other triangle not read; its diagonal taken
 * as ones when unit) and B [..., n, k], batch dims broadcast; recorded. */
static ag_tensor *solve_triangular_matrix(ag_tensor *a, ag_tensor *b, bool upper, bool unit) {
    const char *op = "linalg_solve_triangular";
    if (!a || !b) return NULL; /* a failed operand of a rule (its error recorded) */
    if (ag__check_float(op, a, b)) return NULL;
    ag_tensor *t;
    int64_t n, k, count;
    ag_tensor *y = solve_setup(op, "A", a, b, true, &t, &n, &k, &count);
    if (!y) return NULL;
    ag_status st = check_triangle(op, t, n, count, upper, unit);
    if (!st) st = check_finite(op, y, n * k);
    struct batch_job job = {.dt = a->dtype, .n = n, .k = k, .count = count, .upper = upper, .unit = unit, .a = t, .b = y};
    int64_t bi = 0;
    lapack_int info = st || n == 0 || k == 0 ? 0 : run_batch(count, (double)n * n * k, 0, tri_solve_one, &job, &bi);
    if (info) st = fail_element(op, bi, info, "is singular (A[%d, %d] on its diagonal is zero)");
    ag_release(t);
    if (st) {
        ag__discard(y);
        return NULL;
    }
    ag_tensor *in[2] = {a, b};
    if (ag__needs_grad(in, 2) && !ag__record(y, &op_solve_triangular, in, 2)) return NULL;
    y->attr.i[0] = upper;
    y->attr.i[1] = unit;
    return y;
}

/* GA [n, n] (elements of dt) = -GA on the triangle a triangular solve reads (tri_cols), 0 elsewhere. */
static void neg_triangle(ag_dtype dt, void *ga, int64_t n, bool upper, bool unit) {
    size_t es = ag_dtype_size(dt);
    for (int64_t i = 0; i < n; i++) {
        int64_t lo, hi;
        tri_cols(i, n, upper, unit, &lo, &hi);
        char *row = (char *)ga + (size_t)(i * n) * es;
        memset(row, 0, (size_t)lo * es);
        if (dt == AG_F32)
            for (int64_t j = lo; j < hi; j++) ((float *)row)[j] = -((float *)row)[j];
        else
            for (int64_t j = lo; j < hi; j++) ((double *)row)[j] = -((double *)row)[j];
        memset(row + (size_t)hi * es, 0, (size_t)(n - hi) * es);
    }
}

/* Element bi of solve_triangular's adjoint: b's dX solved by a's triangle transposed (dB = A⁻ᵀ·dX,
 * in place), then d's dA = tri(-dB·Xᵀ) (X: c) when d. */
static lapack_int tri_solve_back_one(void *ctx, int64_t bi, void *scratch) {
    const struct batch_job *j = ctx;
    int64_t n = j->n, k = j->k;
    char *G = mat_at(j->b, bi, n * k);
    (void)scratch;
    lapack_int info = k ? x_trtrs(j->dt, j->upper ? 'U' : 'L', 'T', j->unit ? 'U' : 'N', (lapack_int)n, (lapack_int)k,
                                  mat_at(j->a, bi, n * n), G) : 0;
    if (!info && j->d) {
        char *GA = mat_at(j->d, bi, n * n);
        mm_dt(j->dt, n, k, n, G, false, mat_at(j->c, bi, n * k), true, GA);
        neg_triangle(j->dt, GA, n, j->upper, j->unit);
    }
    return info;
}

/* dB = A⁻ᵀ·dX (trsm with A transposed), dA = tri(-dB·Xᵀ), over the output's batch, in the
 * tensors' dtype: a float32 gradient is solved as its forward (and PyTorch's), with no float64
 * copies (512 x 512 with 16 columns, one thread: see docs/benchmarks.md, "Session 11"). */
static ag_status solve_triangular_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *a = out->in[0], *b = out->in[1];
    bool upper = out->attr.i[0], unit = out->attr.i[1];
    ag_dtype dt = out->dtype;
    int nd = out->ndim, nb = nd - 2;
    int64_t n = out->shape[nd - 2], k = out->shape[nd - 1], ashape[AG_MAX_DIMS];
    join_shape(nb, out->shape, 2, (int64_t[]){n, n}, ashape);
    ag_tensor *t = read_as(a, nd, ashape), *gb = work_copy(gout, nd, out->shape, dt);
    ag_tensor *ga = ag__wants(out, 0) ? ag__new_unowned(dt, nd, ashape, false) : NULL;
    ag_status st = t && gb && (ga || !ag__wants(out, 0)) ? AG_OK : AG_ERR_NOMEM;
    int64_t count = ag__numel(nb, out->shape), bi = 0;
    struct batch_job job = {.dt = dt, .n = n, .k = k, .count = count, .upper = upper, .unit = unit, .a = t, .b = gb,
                            .c = out, .d = ga};
    lapack_int info = st || n == 0 ? 0 : run_batch(count, (double)n * n * k * 2, 0, tri_solve_back_one, &job, &bi);
    if (info) st = fail_element("linalg_solve_triangular: backward", bi, info, "is singular (A[%d, %d] on its diagonal is zero)");
    if (!st && ga) st = ag__accumulate(a, ga), ga = NULL;
    if (!st && ag__wants(out, 1)) st = ag__accumulate(b, gb), gb = NULL;
    return done(st, t, gb, ga, NULL);
}

/* dB = solve_triangular(Aᵀ, dX), dA = tri(-dB·Xᵀ) */
static ag_status solve_triangular_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    bool upper = out->attr.i[0], unit = out->attr.i[1];
    ag_tensor *at = mT(out->in[0]), *gb = at ? solve_triangular_matrix(at, gout, !upper, unit) : NULL;
    if (!gb) return made(gb);
    if (ag__wants(out, 1)) gin[1] = gb;
    return ag__wants(out, 0) ? gave(&gin[0], triangle(ag_neg(ag_matmul(gb, mT(out))), upper, unit)) : AG_OK;
}

/* dX = A⁻¹·(dB - tri(dA)·X) */
static ag_tensor *solve_triangular_jvp(ag_tensor *out, ag_tensor *const *tin) {
    bool upper = out->attr.i[0], unit = out->attr.i[1];
    ag_tensor *rhs = tin[1];
    if (tin[0]) {
        ag_tensor *dax = ag_matmul(triangle(tin[0], upper, unit), out);
        rhs = rhs ? ag_sub(rhs, dax) : ag_neg(dax);
    }
    return rhs ? solve_triangular_matrix(out->in[0], rhs, upper, unit) : NULL;
}

ag_tensor *ag_linalg_solve_triangular(ag_tensor *a, ag_tensor *b, bool upper, bool left, bool unitriangular) {
    AG_CHECK_HANDLES(NULL, "linalg_solve_triangular", a, b);
    if (!a || !b) return NULL;
    const char *op = "linalg_solve_triangular";
    if (left) return solve_triangular_matrix(a, b, upper, unitriangular);
    if (ag__check_float(op, a, b) || check_matrix(op, a, true) || check_matrix(op, b, false)) return NULL;
    if (ag__composite_begin(op)) return NULL;
    /* X·A = B:  Aᵀ·Xᵀ = Bᵀ, Aᵀ triangular the other way */
    ag_tensor *x = solve_triangular_matrix(mT(a), mT(b), !upper, unitriangular);
    return ag__composite_end(x ? mT(x) : NULL);
}

/* ---- inv ------------------------------------------------------------------------------------------- */
static ag_status inv_backward(ag_tensor *out, ag_tensor *gout);
static ag_tensor *inv_jvp(ag_tensor *out, ag_tensor *const *tin);
static ag_status inv_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
/* Y = A⁻¹;  dA = -Yᵀ·dY·Yᵀ;  tangent dY = -Y·dA·Y */
static const ag_op op_inv = {.name = "linalg_inv", .grad_fn = "LinalgInvExBackward0", .backward = inv_backward,
                             .saves = AG_SAVES_OUT,
                             .math = "Y = A⁻¹ (LU);  dA = -Yᵀ·dY·Yᵀ",
                             .backward_graph = inv_backward_graph, .jvp = inv_jvp,
                             .tangent = "Ẏ = -Y·Ȧ·Y"};

/* Element bi of inv's forward: A⁻¹ in place of a's matrix; piv its pivots. */
static lapack_int inv_one(void *ctx, int64_t bi, void *piv) {
    const struct batch_job *j = ctx;
    char *m = mat_at(j->a, bi, j->n * j->n);
    lapack_int info = x_getrf(j->dt, (lapack_int)j->n, m, piv);
    return info ? info : x_getri(j->dt, (lapack_int)j->n, m, piv);
}

/* Element bi of inv's adjoint: c's dA = -Yᵀ·dY·Yᵀ (Y: a, dY: b); t scratch for n x n. */
static lapack_int inv_back_one(void *ctx, int64_t bi, void *t) {
    const struct batch_job *j = ctx;
    int64_t n = j->n;
    char *Y = mat_at(j->a, bi, n * n), *GA = mat_at(j->c, bi, n * n);
    mm_dt(j->dt, n, n, n, Y, true, mat_at(j->b, bi, n * n), false, t); /* Yᵀ·dY */
    mm_dt(j->dt, n, n, n, t, false, Y, true, GA);
    negate(j->dt, GA, n * n);
    return 0;
}

/* dA = -Yᵀ·dY·Yᵀ */
static ag_status inv_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *yt = mT(out);
    return gave(&gin[0], ag_neg(ag_matmul(ag_matmul(yt, gout), yt)));
}

/* dY = -Y·dA·Y */
static ag_tensor *inv_jvp(ag_tensor *out, ag_tensor *const *tin) {
    return ag_neg(ag_matmul(ag_matmul(out, tin[0]), out));
}

ag_tensor *ag_linalg_inv(ag_tensor *a) {
    AG_CHECK_HANDLES(NULL, "linalg_inv", a);
    if (!a) return NULL;
    const char *op = "linalg_inv";
    if (check_matrix(op, a, true)) return NULL;
    int64_t n = a->shape[a->ndim - 1];
    ag_tensor *y = ag__new(a->dtype, a->ndim, a->shape);
    if (!y) return NULL;
    ag__copy_into(y, a);
    ag_status st = check_finite(op, y, n * n);
    int64_t count = ag__numel(a->ndim - 2, a->shape), bi = 0;
    struct batch_job job = {.dt = a->dtype, .n = n, .count = count, .a = y};
    lapack_int info = st || n == 0 ? 0 : run_batch(count, (double)n * n * n * 2, (size_t)(n + 1) * sizeof(lapack_int),
                                                  inv_one, &job, &bi);
    if (info) st = fail_element(op, bi, info, SINGULAR);
    if (st) {
        ag__discard(y);
        return NULL;
    }
    if (ag__needs_grad1(a) && !ag__record(y, &op_inv, &a, 1)) return NULL;
    return y;
}

/* dA = -Yᵀ·dY·Yᵀ, two products in the dtype (float32: sgemm, as PyTorch's). */
static ag_status inv_backward(ag_tensor *out, ag_tensor *gout) {
    ag_dtype dt = out->dtype;
    int nd = out->ndim;
    int64_t n = out->shape[nd - 1], count = ag__numel(nd - 2, out->shape);
    ag_tensor *g = read_as(gout, nd, out->shape), *ga = ag__new_unowned(dt, nd, out->shape, false);
    if (!g || !ga) return done(AG_ERR_NOMEM, g, ga, NULL, NULL);
    struct batch_job job = {.dt = dt, .n = n, .count = count, .a = out, .b = g, .c = ga};
    int64_t bi = 0; /* no lane of an empty batch is walked */
    ag_status st = n && run_batch(count, (double)n * n * n * 2, (size_t)(n * n) * ag_dtype_size(dt), inv_back_one, &job, &bi)
                       ? AG_ERR_NOMEM : AG_OK;
    if (!st) st = ag__accumulate(out->in[0], ga), ga = NULL;
    return done(st, g, ga, NULL, NULL);
}

/* ---- det and slogdet ------------------------------------------------------------------------------- */
/* Element bi of lu_logdet: a's factors (in place; into c by lu_keep when c), and its sign, log|det|
 * and det into sld; piv its pivots.  Only a negative info (LAPACKE's own failure) is a failure: a
 * singular matrix has a zero det. */
static lapack_int lu_det_one(void *ctx, int64_t bi, void *pivots) {
    const struct batch_job *j = ctx;
    int64_t n = j->n, count = j->count;
    lapack_int *piv = pivots;
    char *m = mat_at(j->a, bi, n * n);
    lapack_int info = n ? x_getrf(j->dt, (lapack_int)n, m, piv) : 0;
    if (info < 0) return info;
    if (j->c) lu_keep(j->c, bi, n, m, piv); /* a singular one's too: its adjoint does not read them */
    double s = 1, l = 0, d = 1;
    for (int64_t i = 0; i < n; i++) {
        double u = get(j->dt, m, i * n + i);
        if (piv[i] != i + 1) s = -s, d = -d;
        if (u < 0) s = -s;
        l += log(fabs(u)); /* -inf at a zero pivot */
        d *= u;
    }
    j->sld[bi] = info > 0 ? 0 : s;
    j->sld[count + bi] = info > 0 ? -INFINITY : l;
    j->sld[2 * count + bi] = info > 0 ? 0 : d;
    return 0;
}

/* The LU of each matrix of lu (a work copy in its dtype, factorised in place) gives
 * per batch element sign(det), log|det| (0 and -inf when singular) and det into sld (count
 * each, in that order), the permutation's sign times the product of the pivots, and the factors
 * into kept (lu_keep) unless it is NULL; the elements over agrad's threads (run_batch).
 * AG_ERR_VALUE only for a NaN. */
static ag_status lu_logdet(const char *op, ag_tensor *lu, int64_t n, int64_t count, double *sld, ag_tensor *kept) {
    ag_status st = check_finite(op, lu, n * n);
    if (st) return st;
    struct batch_job job = {.dt = lu->dtype, .n = n, .count = count, .a = lu, .c = kept, .sld = sld};
    int64_t bi = 0;
    lapack_int info = run_batch(count, (double)n * n * n, (size_t)(n + 1) * sizeof(lapack_int), lu_det_one, &job, &bi);
    return info ? fail_element(op, bi, info, "") : AG_OK;
}

static ag_status det_backward(ag_tensor *out, ag_tensor *gout);
static ag_tensor *det_jvp(ag_tensor *out, ag_tensor *const *tin);
static ag_status det_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
/* tangent dd = d·tr(A⁻¹·dA) (A must be invertible: a singular A fails as solve does) */
/* d = det A;  dA = dd·d·A⁻ᵀ (the cofactor matrix; U·diag(Πⱼ≠ᵢ sⱼ)·Vᵀ·det(U)·det(V) through the SVD when singular) */
static const ag_op op_det = {.name = "linalg_det", .grad_fn = "LinalgDetBackward0", .backward = det_backward,
                             .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                             .math = "d = det A (LU);  "
                                     "dA = dd·d·A⁻ᵀ (the cofactor matrix; through the SVD when A is singular)",
                             .backward_graph = det_backward_graph, .jvp = det_jvp,
                             .tangent = "ḋ = d·tr(A⁻¹·Ȧ)"};

/* dA = dd·d·A⁻ᵀ (A must be invertible: inv's "is singular" otherwise) */
static ag_status det_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    return gave(&gin[0], ag_mul(per_matrix(ag_mul(gout, out)), mT(ag_linalg_inv(out->in[0]))));
}

/* dd = d·tr(A⁻¹·dA), the trace over the last two dims. */
static ag_tensor *det_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *diag = ag_diagonal(solve_matrix(out->in[0], tin[0]), 0, -2, -1);
    int last = diag ? diag->ndim - 1 : 0;
    return diag ? ag_mul(out, ag_sum_dims(diag, 1, &last, false)) : NULL;
}

ag_tensor *ag_linalg_det(ag_tensor *a) {
    AG_CHECK_HANDLES(NULL, "linalg_det", a);
    if (!a) return NULL;
    const char *op = "linalg_det";
    if (check_matrix(op, a, true)) return NULL;
    int64_t n = a->shape[a->ndim - 1], count = ag__numel(a->ndim - 2, a->shape);
    ag_tensor *y = ag__new(a->dtype, a->ndim - 2, a->shape);
    ag_tensor *lu = y ? work_copy(a, a->ndim, a->shape, a->dtype) : NULL;
    ag_tensor *kept = lu && ag__needs_grad1(a) ? lu_keep_new(a->dtype, count, n) : NULL;
    double *sl = lu && (kept || !ag__needs_grad1(a)) ? ag__alloc_n(3 * count + 1, sizeof(double)) : NULL;
    ag_status st = sl ? lu_logdet(op, lu, n, count, sl, kept) : AG_ERR_NOMEM;
    for (int64_t bi = 0; !st && bi < count; bi++) put(a->dtype, ag__ptr(y), bi, sl[2 * count + bi]);
    ag__free(sl);
    ag_release(lu);
    if (st) {
        ag_release(kept);
        ag__discard(y);
        return NULL;
    }
    if (kept && !ag__record_saved(y, &op_det, &a, 1, kept)) return NULL;
    return y;
}

/* The cofactor matrix of the n x n matrix A (overwritten) into C, through the SVD
 * A = U·S·Vᵀ: C = det(U)·det(Vᵀ)·U·diag(Πⱼ≠ᵢ sⱼ)·Vᵀ, defined for a singular A too. */
static lapack_int cofactor_svd(int64_t n, double *A, double *C) {
    double *buf = ag__alloc_n(3 * n * n + n + 1, sizeof(double));
    lapack_int *piv = ag__alloc_n(n + 1, sizeof(lapack_int));
    if (!buf || !piv) {
        ag__free(buf);
        ag__free(piv);
        return LAPACK_WORK_MEMORY_ERROR;
    }
    double *U = buf, *VT = U + n * n, *T = VT + n * n, *s = T + n * n;
    lapack_int ln = (lapack_int)n, info = LAPACKE_dgesdd(ROW, 'A', ln, ln, A, ln, s, U, ln, VT, ln);
    double sign = 1;
    for (int pass = 0; pass < 2 && !info; pass++) { /* det(U)·det(Vᵀ) = ±1 from their LUs */
        memcpy(T, pass ? VT : U, sizeof(double) * (size_t)(n * n));
        info = x_getrf(AG_F64, ln, T, piv);
        for (int64_t i = 0; i < n && !info; i++) sign *= (piv[i] != i + 1 ? -1 : 1) * (T[i * n + i] < 0 ? -1 : 1);
    }
    if (!info) {
        for (int64_t i = 0; i < n; i++) { /* U·diag(Πⱼ≠ᵢ sⱼ) */
            double p = sign;
            for (int64_t j = 0; j < n; j++) p *= j == i ? 1 : s[j];
            for (int64_t r = 0; r < n; r++) U[r * n + i] *= p;
        }
        mm(n, n, n, U, false, VT, false, C);
    }
    ag__free(buf);
    ag__free(piv);
    return info;
}

/* The bytes of n + 1 pivots, rounded up to a whole double (what follows them is aligned). */
static size_t piv_bytes(int64_t n) { return ((size_t)(n + 1) * sizeof(lapack_int) + 7) / 8 * 8; }

/* Element bi of det's and slogdet's adjoints: d's dA = sld[bi]·A⁻ᵀ from the kept factors c;
 * scratch: the pivots (piv_bytes), then n x n doubles for det.  det (dets not NULL): where dets[bi] is 0, sld[bi]
 * (then dd) times the cofactors of b's float64 A through the SVD (its info: did not converge).
 * slogdet: a zero pivot is a failure (info: its 1-based row). */
static lapack_int inverse_t_one(void *ctx, int64_t bi, void *scratch) {
    const struct batch_job *j = ctx;
    int64_t n = j->n;
    lapack_int *piv = scratch;
    double *C = (double *)((char *)scratch + piv_bytes(n));
    char *L = lu_kept(j->c, bi, n, piv), *GA = mat_at(j->d, bi, n * n);
    if (j->dets && j->dets[bi] == 0) {
        lapack_int info = cofactor_svd(n, dp(j->b) + bi * n * n, C);
        for (int64_t i = 0; i < n * n && !info; i++) put(j->dt, GA, i, C[i] * j->sld[bi]);
        return info;
    }
    for (int64_t i = 0; i < n && !j->dets; i++) /* the forward's getrf info: its first zero pivot */
        if (get(j->dt, L, i * n + i) == 0) return (lapack_int)(i + 1);
    return scaled_inverse_t(j->dt, n, j->sld[bi], L, piv, GA);
}

/* dA = dd·d·A⁻ᵀ (the forward's LU factors, in the dtype), or dd·cofactor(A) through a float64
 * SVD for a singular A. */
static ag_status det_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *a = out->in[0];
    ag_dtype dt = a->dtype;
    int nd = a->ndim;
    int64_t n = a->shape[nd - 1], count = ag__numel(nd - 2, a->shape);
    ag_tensor *ga = ag__new_unowned(dt, nd, a->shape, false);
    ag_tensor *d = f64(out, out->ndim, out->shape), *g = f64(gout, out->ndim, out->shape), *w = NULL;
    ag_status st = ga && d && g ? AG_OK : AG_ERR_NOMEM;
    bool singular = false;
    for (int64_t bi = 0; !st && bi < count; bi++) {
        singular |= dp(d)[bi] == 0;
        if (dp(d)[bi] != 0) dp(g)[bi] *= dp(d)[bi]; /* the scale dd·d (dd for the cofactors) */
    }
    if (!st && singular && n > 0 && !(w = f64(a, nd, a->shape))) st = AG_ERR_NOMEM; /* for cofactor_svd */
    struct batch_job job = {.dt = dt, .n = n, .count = count, .b = w, .c = out->saved, .d = ga, .sld = st ? NULL : dp(g),
                            .dets = st ? NULL : dp(d)};
    int64_t bi = 0;
    lapack_int info = st || n == 0 ? 0 : run_batch(count, 2.0 * n * n * n, piv_bytes(n) + (size_t)(n * n) * sizeof(double),
                                                  inverse_t_one, &job, &bi);
    if (info) st = fail_element("linalg_det: backward", bi, info, "did not converge in the SVD (%d superdiagonals)");
    if (!st) st = ag__accumulate(a, ga), ga = NULL;
    return done(st, w, ga, d, g);
}

static ag_status slogdet_backward(ag_tensor *out, ag_tensor *gout);
static ag_status slogdet_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *slogdet_jvp(ag_tensor *out, ag_tensor *const *tin);
/* tangent (ds, dl) = (0, tr(A⁻¹·dA)) */
/* (s, l) = (sign det A, log|det A|) packed in [..., 2];  dA = dl·A⁻ᵀ (s is not differentiable) */
static const ag_op op_slogdet = {.name = "linalg_slogdet", .grad_fn = "LinalgSlogdetBackward0",
                                 .backward = slogdet_backward, .saves = AG_SAVES_IN0,
                                 .math = "(s, l) = (sign det A, log|det A|) (LU);  dA = dl·A⁻ᵀ (s has no gradient)",
                                 .backward_graph = slogdet_backward_graph, .jvp = slogdet_jvp,
                                 .tangent = "(ṡ, l̇) = (0, tr(A⁻¹·Ȧ))"};

/* [..., 2]: sign, then log|det|. */
static ag_tensor *slogdet_packed(ag_tensor *a) {
    const char *op = "linalg_slogdet";
    if (check_matrix(op, a, true)) return NULL;
    int nd = a->ndim;
    int64_t n = a->shape[nd - 1], count = ag__numel(nd - 2, a->shape), shape[AG_MAX_DIMS];
    memcpy(shape, a->shape, sizeof(int64_t) * (size_t)(nd - 2));
    shape[nd - 2] = 2;
    ag_tensor *y = ag__new(a->dtype, nd - 1, shape);
    ag_tensor *lu = y ? work_copy(a, nd, a->shape, a->dtype) : NULL;
    ag_tensor *kept = lu && ag__needs_grad1(a) ? lu_keep_new(a->dtype, count, n) : NULL;
    double *sl = lu && (kept || !ag__needs_grad1(a)) ? ag__alloc_n(3 * count + 1, sizeof(double)) : NULL;
    ag_status st = sl ? lu_logdet(op, lu, n, count, sl, kept) : AG_ERR_NOMEM;
    for (int64_t bi = 0; !st && bi < count; bi++) {
        put(a->dtype, ag__ptr(y), 2 * bi, sl[bi]);
        put(a->dtype, ag__ptr(y), 2 * bi + 1, sl[count + bi]);
    }
    ag__free(sl);
    ag_release(lu);
    if (st) {
        ag_release(kept);
        ag__discard(y);
        return NULL;
    }
    if (kept && !ag__record_saved(y, &op_slogdet, &a, 1, kept)) return NULL;
    return y;
}

/* dA = dl·A⁻ᵀ from the forward's LU factors; AG_ERR_VALUE for a singular batch element (log|det| = -inf). */
static ag_status slogdet_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *a = out->in[0];
    int nd = a->ndim;
    int64_t n = a->shape[nd - 1], count = ag__numel(nd - 2, a->shape);
    ag_dtype dt = a->dtype;
    ag_tensor *ga = ag__new_unowned(dt, nd, a->shape, false), *g = f64(gout, out->ndim, out->shape);
    ag_status st = ga && g ? AG_OK : AG_ERR_NOMEM;
    for (int64_t bi = 0; !st && bi < count; bi++) dp(g)[bi] = dp(g)[2 * bi + 1]; /* the scale dl, packed down */
    struct batch_job job = {.dt = dt, .n = n, .count = count, .c = out->saved, .d = ga, .sld = st ? NULL : dp(g)};
    int64_t bi = 0;
    lapack_int info = st || n == 0 ? 0 : run_batch(count, 2.0 * n * n * n, (size_t)(n + 1) * sizeof(lapack_int), inverse_t_one,
                                                  &job, &bi);
    if (info) st = fail_element("linalg_slogdet: backward", bi, info,
                                "is singular: log|det| = -inf has no gradient (U[%d, %d] is zero)");
    if (!st) st = ag__accumulate(a, ga), ga = NULL;
    return done(st, ga, g, NULL, NULL);
}

/* dA = dl·A⁻ᵀ (A must be invertible) */
static ag_status slogdet_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    return gave(&gin[0], ag_mul(per_matrix(ag_select(gout, -1, 1)), mT(ag_linalg_inv(out->in[0]))));
}

/* (ds, dl) = (0, tr(A⁻¹·dA)), packed as the result */
static ag_tensor *slogdet_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *dl = trace(solve_matrix(out->in[0], tin[0])), *ds = dl ? ag_zeros_like(dl) : NULL;
    return ds ? ag_stack((ag_tensor *[]){ds, dl}, 2, -1) : NULL;
}

ag_status ag_linalg_slogdet(ag_tensor *a, ag_tensor **sign, ag_tensor **logabsdet) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "linalg_slogdet", a);
    if (sign) *sign = NULL;
    if (logabsdet) *logabsdet = NULL;
    if (!sign || !logabsdet) return ag__fail(AG_ERR_ARG, "linalg_slogdet: sign and logabsdet must not be NULL");
    if (!a) return ag_last_status() ? ag_last_status() : AG_ERR_ARG;
    ag_tensor *y = slogdet_packed(a);
    ag_tensor *s = y ? ag_select(y, -1, 0) : NULL, *l = s ? ag_select(y, -1, 1) : NULL;
    ag__discard(y); /* the views keep it */
    if (!l) {
        ag__discard(s);
        return ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
    }
    *sign = s;
    *logabsdet = l;
    return AG_OK;
}

/* ---- cholesky and cholesky_solve ------------------------------------------------------------------- */
static ag_status cholesky_backward(ag_tensor *out, ag_tensor *gout);
static ag_status cholesky_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *cholesky_jvp(ag_tensor *out, ag_tensor *const *tin);
/* tangent dL = L·Φ(L⁻¹·sym(dA)·L⁻ᵀ), Φ(X) = tril(X) with its diagonal halved (dU = dLᵀ) */
/* L = chol(A), A = L·Lᵀ;  Φ = tril(Lᵀ·dL) with its diagonal halved, G = L⁻ᵀ·Φ·L⁻¹, dA = (G + Gᵀ)/2 */
static const ag_op op_cholesky = {.name = "linalg_cholesky", .grad_fn = "LinalgCholeskyExBackward0",
                                  .backward = cholesky_backward, .saves = AG_SAVES_OUT,
                                  .math = "L = chol(A), A = L·Lᵀ (U = Lᵀ when upper);  "
                                          "Φ = tril(Lᵀ·dL), diagonal halved; G = L⁻ᵀ·Φ·L⁻¹, dA = (G + Gᵀ)/2",
                                  .backward_graph = cholesky_backward_graph, .jvp = cholesky_jvp,
                                  .tangent = "L̇ = L·Φ(L⁻¹·sym(Ȧ)·L⁻ᵀ), Φ = tril with the diagonal halved, "
                                             "sym(Ȧ) = (Ȧ + Ȧᵀ)/2 (U̇ = L̇ᵀ when upper)"};

/* Element bi of cholesky's forward: a's factor in place, L in the lower triangle and zeros above,
 * or U = Lᵀ in the upper triangle and zeros below (upper). */
static lapack_int cholesky_one(void *ctx, int64_t bi, void *scratch) {
    const struct batch_job *j = ctx;
    int64_t n = j->n;
    char *m = mat_at(j->a, bi, n * n);
    (void)scratch;
    lapack_int info = x_potrf(j->dt, 'L', (lapack_int)n, m);
    if (!info)
        BY_DTYPE(j->dt, T, {
            T *x = (T *)m;
            for (int64_t i = 0; i < n; i++)
                for (int64_t c = i + 1; c < n; c++) {
                    x[i * n + c] = j->upper ? x[c * n + i] : 0;
                    if (j->upper) x[c * n + i] = 0;
                }
        });
    return info;
}

ag_tensor *ag_linalg_cholesky(ag_tensor *a, bool upper) {
    AG_CHECK_HANDLES(NULL, "linalg_cholesky", a);
    if (!a) return NULL;
    const char *op = "linalg_cholesky";
    if (check_matrix(op, a, true)) return NULL;
    int64_t n = a->shape[a->ndim - 1], count = ag__numel(a->ndim - 2, a->shape);
    ag_tensor *y = ag__new(a->dtype, a->ndim, a->shape);
    if (!y) return NULL;
    ag__copy_into(y, a);
    ag_status st = check_finite(op, y, n * n);
    struct batch_job job = {.dt = a->dtype, .n = n, .count = count, .upper = upper, .a = y};
    int64_t bi = 0;
    lapack_int info = st || n == 0 ? 0 : run_batch(count, (double)n * n * n / 3, 0, cholesky_one, &job, &bi);
    if (info) st = fail_element(op, bi, info, "is not positive-definite (leading minor of order %d)");
    if (st) {
        ag__discard(y);
        return NULL;
    }
    if (ag__needs_grad1(a) && !ag__record(y, &op_cholesky, &a, 1)) return NULL;
    y->attr.i[0] = upper;
    return y;
}

/* As PyTorch's cholesky_backward (with U = Lᵀ, dL = dUᵀ when upper), in the dtype (float32: its
 * trtri and sgemm, as PyTorch's). */
static ag_status cholesky_backward(ag_tensor *out, ag_tensor *gout) {
    bool upper = out->attr.i[0];
    ag_dtype dt = out->dtype;
    int nd = out->ndim;
    int64_t n = out->shape[nd - 1], count = ag__numel(nd - 2, out->shape);
    ag_tensor *l = work_copy(out, nd, out->shape, dt), *g = work_copy(gout, nd, out->shape, dt);
    ag_tensor *ga = ag__new_unowned(dt, nd, out->shape, false);
    char *buf = ag__alloc_n(2 * n * n + 1, ag_dtype_size(dt));
    ag_status st = l && g && ga && buf ? AG_OK : AG_ERR_NOMEM;
    for (int64_t bi = 0; bi < count && !st && n > 0; bi++) {
        char *phi = buf, *t = buf + (size_t)(n * n) * ag_dtype_size(dt), *Lp = mat_at(l, bi, n * n);
        BY_DTYPE(dt, T, {
            T *L = (T *)Lp, *dL = (T *)mat_at(g, bi, n * n), *F = (T *)phi;
            if (upper) /* L = Uᵀ, dL = dUᵀ */
                for (int64_t i = 0; i < n; i++)
                    for (int64_t j = i + 1; j < n; j++) {
                        T u = L[i * n + j], du = dL[i * n + j];
                        L[i * n + j] = L[j * n + i], L[j * n + i] = u;
                        dL[i * n + j] = dL[j * n + i], dL[j * n + i] = du;
                    }
            for (int64_t i = 0; i < n; i++) /* tril(dL) */
                for (int64_t j = i + 1; j < n; j++) dL[i * n + j] = 0;
            mm_dt(dt, n, n, n, L, true, dL, false, F); /* Φ = tril(Lᵀ·dL), diagonal halved */
            for (int64_t i = 0; i < n; i++) {
                for (int64_t j = i + 1; j < n; j++) F[i * n + j] = 0;
                F[i * n + i] *= (T)0.5;
            }
        });
        lapack_int info = x_trtri(dt, 'L', (lapack_int)n, Lp); /* L⁻¹ in place */
        if (info) {
            st = fail_element("linalg_cholesky: backward", bi, info, "has a zero on the factor's diagonal (row %d)");
            break;
        }
        BY_DTYPE(dt, T, {
            T *L = (T *)Lp, *F = (T *)phi, *GA = (T *)mat_at(ga, bi, n * n);
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = i + 1; j < n; j++) L[i * n + j] = 0;
            mm_dt(dt, n, n, n, L, true, F, false, t); /* L⁻ᵀ·Φ */
            mm_dt(dt, n, n, n, t, false, L, false, F); /* ·L⁻¹ */
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < n; j++) GA[i * n + j] = (T)0.5 * (F[i * n + j] + F[j * n + i]);
        });
    }
    ag__free(buf);
    if (!st) st = ag__accumulate(out->in[0], ga), ga = NULL;
    return done(st, l, g, ga, NULL);
}

/* Φ(X): the lower triangle of X with its diagonal halved. */
static ag_tensor *tril_half(ag_tensor *x) {
    return ag_sub(ag_tril(x, 0), ag_mul_scalar(ag_diag_embed(ag_diagonal(x, 0, -2, -1), 0, -2, -1), 0.5));
}

/* T⁻¹·X·T⁻ᵀ (transposed: T⁻ᵀ·X·T⁻¹) for triangular T, by two triangular solves. */
static ag_tensor *tri_sandwich(ag_tensor *t, bool upper, ag_tensor *x, bool transposed) {
    if (!t) return NULL;
    if (transposed) t = mT(t), upper = !upper;
    ag_tensor *left = solve_triangular_matrix(t, x, upper, false); /* T⁻¹·X */
    return left ? mT(solve_triangular_matrix(t, mT(left), upper, false)) : NULL; /* (T⁻¹·(T⁻¹·X)ᵀ)ᵀ */
}

/* G = L⁻ᵀ·Φ(Lᵀ·tril(dL))·L⁻¹, dA = (G + Gᵀ)/2 (upper: L = Uᵀ, dL = dUᵀ) */
static ag_status cholesky_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    bool upper = out->attr.i[0];
    ag_tensor *l = upper ? mT(out) : out, *gl = upper ? mT(gout) : gout;
    return gave(&gin[0], sym(tri_sandwich(l, false, tril_half(ag_matmul(mT(l), ag_tril(gl, 0))), true)));
}

/* dL = L·Φ(L⁻¹·sym(dA)·L⁻ᵀ) (the adjoint's symmetric dA), dU = dLᵀ */
static ag_tensor *cholesky_jvp(ag_tensor *out, ag_tensor *const *tin) {
    bool upper = out->attr.i[0];
    ag_tensor *l = upper ? mT(out) : out;
    ag_tensor *dl = ag_matmul(l, tril_half(tri_sandwich(l, false, sym(tin[0]), false)));
    return upper ? mT(dl) : dl;
}

static ag_status cholesky_solve_backward(ag_tensor *out, ag_tensor *gout);
static ag_status cholesky_solve_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *cholesky_solve_jvp(ag_tensor *out, ag_tensor *const *tin);
/* tangent dX = (L·Lᵀ)⁻¹·(dB - (dL·Lᵀ + L·dLᵀ)·X) (upper: dUᵀ·U + Uᵀ·dU) */
/* X = (L·Lᵀ)⁻¹·B;  dB = (L·Lᵀ)⁻¹·dX, C = dB·Xᵀ + X·dBᵀ, dL = -C·L (upper: dU = -U·C) */
static const ag_op op_cholesky_solve = {.name = "cholesky_solve", .grad_fn = "CholeskySolveBackward0",
                                        .backward = cholesky_solve_backward, .saves = AG_SAVES_IN1 | AG_SAVES_OUT,
                                        .math = "X = (L·Lᵀ)⁻¹·B;  "
                                                "dB = (L·Lᵀ)⁻¹·dX, C = dB·Xᵀ + X·dBᵀ, dL = -C·L (upper: -U·C)",
                                        .backward_graph = cholesky_solve_backward_graph, .jvp = cholesky_solve_jvp,
                                        .tangent = "Ẋ = (L·Lᵀ)⁻¹·(Ḃ - (L̇·Lᵀ + L·L̇ᵀ)·X) (upper: U̇ᵀ·U + Uᵀ·U̇ in the "
                                                   "parentheses)"};

ag_tensor *ag_cholesky_solve(ag_tensor *b, ag_tensor *l, bool upper) {
    AG_CHECK_HANDLES(NULL, "cholesky_solve", b, l);
    if (!b || !l) return NULL;
    const char *op = "cholesky_solve";
    if (ag__check_float(op, b, l)) return NULL;
    ag_tensor *f;
    int64_t n, k, count;
    ag_tensor *y = solve_setup(op, "the factor", l, b, true, &f, &n, &k, &count);
    if (!y) return NULL;
    ag_status st = check_finite(op, f, n * n);
    if (!st) st = check_finite(op, y, n * k);
    for (int64_t bi = 0; bi < count && !st && n > 0 && k > 0; bi++) {
        const char *m = mat_at(f, bi, n * n);
        for (int64_t i = 0; i < n && !st; i++) /* potrs divides by the diagonal without looking */
            if (get(l->dtype, m, i * n + i) == 0)
                st = ag__fail(AG_ERR_VALUE, "%s: batch element %lld: the Cholesky factor has a zero on its diagonal (row %lld)",
                              op, (long long)bi, (long long)i + 1);
        lapack_int info = st ? 0 : x_potrs(b->dtype, upper ? 'U' : 'L', (lapack_int)n, (lapack_int)k, m, mat_at(y, bi, n * k));
        if (info) st = fail_element(op, bi, info, "");
    }
    ag_release(f);
    if (st) {
        ag__discard(y);
        return NULL;
    }
    ag_tensor *in[2] = {b, l};
    if (ag__needs_grad(in, 2) && !ag__record(y, &op_cholesky_solve, in, 2)) return NULL;
    y->attr.i[0] = upper;
    return y;
}

/* As PyTorch's cholesky_solve_backward, in the dtype (float32: the float32 factor's solves and sgemm,
 * as PyTorch's). */
static ag_status cholesky_solve_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *b = out->in[0], *l = out->in[1];
    bool upper = out->attr.i[0];
    ag_dtype dt = out->dtype;
    size_t es = ag_dtype_size(dt);
    int nd = out->ndim, nb = nd - 2;
    int64_t n = out->shape[nd - 2], k = out->shape[nd - 1], lshape[AG_MAX_DIMS], count = ag__numel(nb, out->shape);
    join_shape(nb, out->shape, 2, (int64_t[]){n, n}, lshape);
    ag_tensor *f = read_in(l, nd, lshape, dt), *gb = work_copy(gout, nd, out->shape, dt), *x = read_in(out, nd, out->shape, dt);
    ag_tensor *gl = ag__wants(out, 1) ? ag__new_unowned(dt, nd, lshape, false) : NULL;
    char *c = ag__alloc_n(n * n + 1, es);
    ag_status st = f && gb && x && c && (gl || !ag__wants(out, 1)) ? AG_OK : AG_ERR_NOMEM;
    for (int64_t bi = 0; bi < count && !st && n > 0; bi++) {
        const char *F = mat_at(f, bi, n * n), *X = mat_at(x, bi, n * k);
        char *G = mat_at(gb, bi, n * k);
        lapack_int info = k ? x_potrs(dt, upper ? 'U' : 'L', (lapack_int)n, (lapack_int)k, F, G) : 0;
        if (info) {
            st = fail_element("cholesky_solve: backward", bi, info, "");
            break;
        }
        if (!gl) continue;
        mm_dt(dt, n, k, n, G, false, X, true, c); /* C = dB·Xᵀ + X·dBᵀ */
        BY_DTYPE(dt, T, {
            T *C = (T *)c;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = i; j < n; j++) C[i * n + j] = C[j * n + i] = C[i * n + j] + C[j * n + i];
        });
        char *GL = mat_at(gl, bi, n * n);
        if (upper) mm_dt(dt, n, n, n, F, false, c, false, GL);
        else mm_dt(dt, n, n, n, c, false, F, false, GL);
        negate(dt, GL, n * n);
    }
    ag__free(c);
    if (!st && ag__wants(out, 0)) st = ag__accumulate(b, gb), gb = NULL;
    if (!st && gl) st = ag__accumulate(l, gl), gl = NULL;
    return done(st, f, gb, x, gl);
}

/* dB = cholesky_solve(dX, L), C = dB·Xᵀ + X·dBᵀ, dL = -C·L (upper: dU = -U·C) */
static ag_status cholesky_solve_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *l = out->in[1];
    bool upper = out->attr.i[0];
    ag_tensor *gb = ag_cholesky_solve(gout, l, upper);
    if (!gb) return made(gb);
    if (ag__wants(out, 0)) gin[0] = gb;
    if (!ag__wants(out, 1)) return AG_OK;
    ag_tensor *gbx = ag_matmul(gb, mT(out)), *c = ag_add(gbx, mT(gbx));
    return gave(&gin[1], ag_neg(upper ? ag_matmul(l, c) : ag_matmul(c, l)));
}

/* dX = (L·Lᵀ)⁻¹·(dB - dA·X), dA = dL·Lᵀ + L·dLᵀ (upper: dUᵀ·U + Uᵀ·dU) */
static ag_tensor *cholesky_solve_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *l = out->in[1], *rhs = tin[0];
    bool upper = out->attr.i[0];
    if (tin[1]) {
        ag_tensor *p = upper ? ag_matmul(mT(tin[1]), l) : ag_matmul(tin[1], mT(l)); /* dA = p + pᵀ */
        ag_tensor *dax = ag_matmul(ag_add(p, mT(p)), out);
        rhs = rhs ? ag_sub(rhs, dax) : ag_neg(dax);
    }
    return rhs ? ag_cholesky_solve(rhs, l, upper) : NULL;
}

/* ---- eigh and eigvalsh ----------------------------------------------------------------------------- */
/* The triangle named by uplo: 'L' or 'U' (NULL: 'L'); 0 with an error otherwise. */
static char uplo_of(const char *op, const char *uplo) {
    if (!uplo || strcmp(uplo, "L") == 0 || strcmp(uplo, "l") == 0) return 'L';
    if (strcmp(uplo, "U") == 0 || strcmp(uplo, "u") == 0) return 'U';
    ag__fail(AG_ERR_ARG, "%s: UPLO must be \"L\" or \"U\", got \"%s\"", op, uplo);
    return 0;
}

/* Element bi of eigen: the eigenvalues of a's matrix (triangle uplo) into vals at bi·c, and with jobz
 * 'V' its eigenvectors in place (syevd leaves them as rows of the buffer: transposed to columns).
 * LAPACK always reads the column-major lower triangle (the row-major upper one), as PyTorch's
 * default asks: in 64 x 64 matrices its 'U' path (sormql) ran 4 % slower. */
static lapack_int eigen_one(void *ctx, int64_t bi, void *scratch) {
    const struct decomp_job *j = ctx;
    char *m = mat_at(j->a, bi, j->n * j->n);
    int64_t n = j->n;
    if (j->uplo == 'L') /* the lower triangle mirrored into the upper one, which LAPACK reads as 'L' */
        BY_DTYPE(j->dt, T, {
            T *x = (T *)m;
            for (int64_t i0 = 0; i0 < n; i0 += 16)
                for (int64_t j0 = i0; j0 < n; j0 += 16) {
                    int64_t i1 = i0 + 16 < n ? i0 + 16 : n, j1 = j0 + 16 < n ? j0 + 16 : n;
                    for (int64_t i = i0; i < i1; i++)
                        for (int64_t c = j0 > i ? j0 : i + 1; c < j1; c++) x[i * n + c] = x[c * n + i];
                }
        });
    lapack_int info = x_syevd(j->dt, j->jobz, 'U', (lapack_int)j->n, m, j->vals + (size_t)(bi * j->c) * ag_dtype_size(j->dt),
                              scratch, j->lwork, work_ints(j, scratch), j->liwork);
    if (!info && j->jobz == 'V') transpose_square(j->dt, j->n, m);
    return info;
}

/* Eigen-decomposes each matrix of a: into vals [..., n] (a's dtype, ascending, vstride apart) and,
 * when vecs, into vecs [..., n, n] (columns).  syevd's workspace (1 + 6n + 2n²) must fit
 * lapack_int too. */
static ag_status eigen(const char *op, ag_tensor *a, char uplo, char *vals, int64_t vstride, ag_tensor *vecs) {
    int64_t n = a->shape[a->ndim - 1], count = ag__numel(a->ndim - 2, a->shape);
    if ((double)n * n * 2 + 6.0 * n + 1 > (double)LAPACK_MAX)
        return ag__fail(AG_ERR_SHAPE, "%s: a %lld x %lld matrix needs a LAPACK workspace beyond its int sizes", op,
                        (long long)n, (long long)n);
    ag_tensor *w = vecs ? ag__retain(vecs) : work_copy(a, a->ndim, a->shape, a->dtype);
    if (!w) return AG_ERR_NOMEM;
    if (vecs) ag__copy_into(w, a);
    ag_status st = check_finite(op, w, n * n);
    struct decomp_job job = {.dt = a->dtype, .jobz = vecs ? 'V' : 'N', .uplo = uplo, .m = n, .n = n, .k = n, .c = vstride,
                             .a = w, .vals = vals};
    if (!st && n > 0 && count > 0) {
        double q[2] = {0};
        lapack_int qi[2] = {0};
        st = take_query(op, &job, x_syevd(job.dt, job.jobz, 'U', (lapack_int)n, ag__ptr(w), vals, q, -1, qi, -1), q, qi);
    }
    int64_t bi = 0;
    lapack_int info = st || n == 0 ? 0
                                   : run_batch(count, 4.0 * n * n * n, work_bytes(job.dt, job.lwork, job.liwork), eigen_one,
                                               &job, &bi);
    if (info) st = fail_element(op, bi, info, "did not converge (%d off-diagonal elements)");
    ag_release(w);
    return st;
}

static ag_status eigh_backward(ag_tensor *out, ag_tensor *gout);
static ag_status eigh_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *eigh_jvp(ag_tensor *out, ag_tensor *const *tin);
/* tangent S = Vᵀ·sym(dA)·V: dλ = diag(S), dV = V·(Sᵢⱼ / (λⱼ - λᵢ), 0 on the diagonal) */
/* [λ; V] = eigh(A) packed in [..., n+1, n];  dA = V·(diag(dλ) + (skew(Vᵀ·dV))ᵢⱼ / (λⱼ - λᵢ))·Vᵀ */
static const ag_op op_eigh = {.name = "linalg_eigh", .grad_fn = "LinalgEighBackward0", .backward = eigh_backward,
                              .saves = AG_SAVES_OUT,
                              .math = "A = V·diag(λ)·Vᵀ (λ and V packed);  "
                                      "dA = V·(diag(dλ) + Fᵢⱼ)·Vᵀ, F = ((Vᵀ·dV - dVᵀ·V)/2)ᵢⱼ / (λⱼ - λᵢ) off the "
                                      "diagonal",
                              .backward_graph = eigh_backward_graph, .jvp = eigh_jvp,
                              .tangent = "S = Vᵀ·sym(Ȧ)·V: λ̇ = diag(S), V̇ = V·F, Fᵢⱼ = Sᵢⱼ/(λⱼ - λᵢ) off the "
                                         "diagonal, 0 on it"};

/* [..., n + 1, n]: row 0 the eigenvalues, rows 1..n the eigenvectors (columns). */
static ag_tensor *eigh_packed(ag_tensor *a, char uplo) {
    const char *op = "linalg_eigh";
    if (check_matrix(op, a, true)) return NULL;
    int nd = a->ndim;
    int64_t n = a->shape[nd - 1], count = ag__numel(nd - 2, a->shape), shape[AG_MAX_DIMS];
    memcpy(shape, a->shape, sizeof(int64_t) * (size_t)nd);
    shape[nd - 2] = n + 1;
    if (ag__check_alloc(op, nd, shape, a->dtype)) return NULL;
    ag_tensor *y = ag__new(a->dtype, nd, shape);
    ag_tensor *v = y ? ag__new_unowned(a->dtype, nd, a->shape, false) : NULL;
    char *vals = v ? ag__alloc_n(count * n + 1, ag_dtype_size(a->dtype)) : NULL;
    ag_status st = vals ? eigen(op, a, uplo, vals, n, v) : AG_ERR_NOMEM;
    size_t es = ag_dtype_size(a->dtype);
    for (int64_t bi = 0; bi < count && !st && n > 0; bi++) {
        char *dst = mat_at(y, bi, (n + 1) * n);
        memcpy(dst, vals + (size_t)(bi * n) * es, (size_t)n * es);
        memcpy(dst + (size_t)n * es, mat_at(v, bi, n * n), (size_t)(n * n) * es);
    }
    ag__free(vals);
    ag_release(v);
    if (st) {
        ag__discard(y);
        return NULL;
    }
    if (ag__needs_grad1(a) && !ag__record(y, &op_eigh, &a, 1)) return NULL;
    return y;
}

/* dA = V·(diag(dλ) + F)·Vᵀ, F as PyTorch's linalg_eig_backward (hermitian), in the dtype (float32:
 * sgemm, as PyTorch's).  A nonzero F numerator over a zero eigengap is AG_ERR_VALUE (PyTorch gives
 * inf/NaN). */
static ag_status eigh_backward(ag_tensor *out, ag_tensor *gout) {
    ag_dtype dt = out->dtype;
    int nd = out->ndim;
    int64_t n = out->shape[nd - 1], count = ag__numel(nd - 2, out->shape), shape[AG_MAX_DIMS];
    size_t es = ag_dtype_size(dt);
    memcpy(shape, out->shape, sizeof(int64_t) * (size_t)nd);
    shape[nd - 2] = n;
    ag_tensor *y = read_as(out, nd, out->shape), *g = read_in(gout, nd, out->shape, dt);
    ag_tensor *ga = ag__new_unowned(dt, nd, shape, false);
    char *buf = ag__alloc_n(2 * n * n + 1, es);
    ag_status st = y && g && ga && buf ? AG_OK : AG_ERR_NOMEM;
    for (int64_t bi = 0; bi < count && !st && n > 0; bi++) {
        const char *lp = mat_at(y, bi, (n + 1) * n), *gp = mat_at(g, bi, (n + 1) * n);
        char *Fp = buf, *tp = buf + (size_t)(n * n) * es, *GA = mat_at(ga, bi, n * n);
        mm_dt(dt, n, n, n, lp + n * es, true, gp + n * es, false, tp); /* Vᵀ·dV */
        BY_DTYPE(dt, T, {
            const T *lam = (const T *)lp, *dlam = (const T *)gp, *t = (const T *)tp;
            T *F = (T *)Fp;
            for (int64_t i = 0; i < n && !st; i++)
                for (int64_t j = 0; j < n; j++) {
                    if (i == j) {
                        F[i * n + i] = dlam[i];
                        continue;
                    }
                    T skew = (T)0.5 * (t[i * n + j] - t[j * n + i]), gap = lam[j] - lam[i];
                    if (skew != 0 && gap == 0) {
                        st = ag__fail(AG_ERR_VALUE, "%s: batch element %lld has the repeated eigenvalue %g (eigenvalues %lld "
                                      "and %lld): the eigenvectors' gradient is not defined there (as in PyTorch); use "
                                      "eigenvalues only, or a function of the eigenspace",
                                      "linalg_eigh: backward", (long long)bi, (double)lam[i], (long long)i, (long long)j);
                        break;
                    }
                    F[i * n + j] = skew == 0 ? 0 : skew / gap;
                }
        });
        if (st) break;
        mm_dt(dt, n, n, n, lp + n * es, false, Fp, false, tp); /* V·F·Vᵀ */
        mm_dt(dt, n, n, n, tp, false, lp + n * es, true, GA);
    }
    ag__free(buf);
    if (!st) st = ag__accumulate(out->in[0], ga), ga = NULL;
    return done(st, y, g, ga, NULL);
}

/* The eigenvalues λ [..., n] and eigenvectors V [..., n, n] in eigh's packed p; with
 * the gaps Eᵢⱼ = λⱼ - λᵢ. */
static ag_tensor *eigh_parts(ag_tensor *p, ag_tensor **v, ag_tensor **gaps) {
    int64_t n = p->shape[p->ndim - 1];
    ag_tensor *lam = ag_select(p, -2, 0);
    *v = ag_narrow(p, -2, 1, n);
    if (gaps) *gaps = ag_sub(ag_unsqueeze(lam, -2), ag_unsqueeze(lam, -1));
    return lam;
}

/* dA = V·(diag(dλ) + skew(Vᵀ·dV)/2 ∘ 1/E)·Vᵀ, Eᵢⱼ = λⱼ - λᵢ (0 on the diagonal) */
static ag_status eigh_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *v, *gv, *e, *lam = eigh_parts(out, &v, &e), *glam = eigh_parts(gout, &gv, NULL);
    ag_tensor *f = ag_mul_scalar(skew(ag_matmul(mT(v), gv)), 0.5);
    if (!f || !e || !glam) return made(NULL);
    ag_status st = check_repeated("linalg_eigh: backward", true, lam, f);
    if (st) return st;
    ag_tensor *inner = ag_add(ag_diag_embed(glam, 0, -2, -1), ag_mul(f, inverse_gaps(e)));
    return gave(&gin[0], ag_matmul(ag_matmul(v, inner), mT(v)));
}

/* S = Vᵀ·sym(dA)·V: dλ = diag(S), dV = V·(S ∘ 1/E), packed as the result */
static ag_tensor *eigh_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *v, *e, *lam = eigh_parts(out, &v, &e);
    ag_tensor *s = ag_matmul(ag_matmul(mT(v), sym(tin[0])), v);
    if (!s || !e || !lam || check_repeated("linalg_eigh: forward AD", true, lam, s)) return NULL;
    ag_tensor *dlam = ag_unsqueeze(ag_diagonal(s, 0, -2, -1), -2), *dv = ag_matmul(v, ag_mul(s, inverse_gaps(e)));
    return dlam && dv ? ag_cat((ag_tensor *[]){dlam, dv}, 2, -2) : NULL;
}

ag_status ag_linalg_eigh(ag_tensor *a, const char *uplo, ag_tensor **eigenvalues, ag_tensor **eigenvectors) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "linalg_eigh", a);
    if (eigenvalues) *eigenvalues = NULL;
    if (eigenvectors) *eigenvectors = NULL;
    if (!eigenvalues || !eigenvectors)
        return ag__fail(AG_ERR_ARG, "linalg_eigh: eigenvalues and eigenvectors must not be NULL");
    if (!a) return ag_last_status() ? ag_last_status() : AG_ERR_ARG;
    char u = uplo_of("linalg_eigh", uplo);
    if (!u) return AG_ERR_ARG;
    ag_tensor *y = eigh_packed(a, u);
    int64_t n = y ? a->shape[a->ndim - 1] : 0;
    ag_tensor *l = y ? ag_select(y, -2, 0) : NULL, *v = l ? ag_narrow(y, -2, 1, n) : NULL;
    ag__discard(y); /* the views keep it */
    if (!v) {
        ag__discard(l);
        return ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
    }
    *eigenvalues = l;
    *eigenvectors = v;
    return AG_OK;
}

static ag_status eigvalsh_backward(ag_tensor *out, ag_tensor *gout);
static ag_status eigvalsh_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *eigvalsh_jvp(ag_tensor *out, ag_tensor *const *tin);
/* tangent dλ = diag(Vᵀ·dA·V) */
/* λ = eigvalsh(A);  dA = V·diag(dλ)·Vᵀ (V saved) */
static const ag_op op_eigvalsh = {.name = "linalg_eigvalsh", .grad_fn = "LinalgEighBackward0",
                                  .backward = eigvalsh_backward,
                                  .math = "λ = eigvalsh(A) (A = V·diag(λ)·Vᵀ);  "
                                          "dA = V·diag(dλ)·Vᵀ, defined for repeated λ",
                                  .backward_graph = eigvalsh_backward_graph, .jvp = eigvalsh_jvp,
                                  .tangent = "λ̇ = diag(Vᵀ·Ȧ·V)"};

ag_tensor *ag_linalg_eigvalsh(ag_tensor *a, const char *uplo) {
    AG_CHECK_HANDLES(NULL, "linalg_eigvalsh", a);
    if (!a) return NULL;
    const char *op = "linalg_eigvalsh";
    char u = uplo_of(op, uplo);
    if (!u || check_matrix(op, a, true)) return NULL;
    int64_t n = a->shape[a->ndim - 1];
    ag_tensor *y = ag__new(a->dtype, a->ndim - 1, a->shape);
    bool grad = ag__needs_grad1(a); /* the eigenvectors only when the adjoint needs them */
    ag_tensor *v = y && grad ? ag__new_unowned(a->dtype, a->ndim, a->shape, false) : NULL;
    ag_status st = y && (v || !grad) ? eigen(op, a, u, ag__ptr(y), n, v) : AG_ERR_NOMEM;
    if (st) {
        ag_release(v);
        ag__discard(y);
        return NULL;
    }
    if (!grad) return y;
    if (!ag__record_saved(y, &op_eigvalsh, &a, 1, v)) return NULL;
    y->attr.i[0] = u;
    return y;
}

/* The eigenvectors of eigvalsh's input, recorded (eigh again): the rules in agrad ops
 * need them differentiable, which the saved ones are not. */
static ag_tensor *eigvalsh_vectors(ag_tensor *out) {
    ag_tensor *lam, *v;
    return ag_linalg_eigh(out->in[0], out->attr.i[0] == 'U' ? "U" : "L", &lam, &v) ? NULL : v;
}

/* dA = V·diag(dλ)·Vᵀ with V of a recorded eigh (its gradient fails at repeated λ) */
static ag_status eigvalsh_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *a = out->in[0];
    char s[AG_SHAPE_STR];
    if (ag__version(a) != ag__in_versions(out)[0]) /* the first-order adjoint reads only V: no save checks A */
        return ag__fail(AG_ERR_GRAPH, "backward: one of the variables needed for gradient computation has been modified by an "
                        "in-place operation: input %d of %s, %s %s, is at version %u; expected version %u instead",
                        0, out->op->grad_fn, ag_dtype_name(a->dtype), ag__tshape(s, a), ag__version(a),
                        ag__in_versions(out)[0]);
    ag_tensor *v = eigvalsh_vectors(out);
    return gave(&gin[0], ag_matmul(ag_mul(v, ag_unsqueeze(gout, -2)), mT(v)));
}

/* dλ = diag(Vᵀ·dA·V) */
static ag_tensor *eigvalsh_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *v = eigvalsh_vectors(out);
    return ag_diagonal(ag_matmul(ag_matmul(mT(v), tin[0]), v), 0, -2, -1);
}

/* dA = V·diag(dλ)·Vᵀ, in the dtype */
static ag_status eigvalsh_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *vs = out->saved;
    ag_dtype dt = vs->dtype;
    int nd = vs->ndim;
    int64_t n = vs->shape[nd - 1], count = ag__numel(nd - 2, vs->shape);
    ag_tensor *v = read_as(vs, nd, vs->shape), *g = read_in(gout, out->ndim, out->shape, dt);
    ag_tensor *ga = ag__new_unowned(dt, nd, vs->shape, false);
    char *t = ag__alloc_n(n * n + 1, ag_dtype_size(dt));
    ag_status st = v && g && ga && t ? AG_OK : AG_ERR_NOMEM;
    for (int64_t bi = 0; bi < count && !st && n > 0; bi++) {
        const char *Vp = mat_at(v, bi, n * n);
        BY_DTYPE(dt, T, {
            const T *V = (const T *)Vp, *dl = (const T *)mat_at(g, bi, n);
            T *VD = (T *)t;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < n; j++) VD[i * n + j] = V[i * n + j] * dl[j];
        });
        mm_dt(dt, n, n, n, t, false, Vp, true, mat_at(ga, bi, n * n));
    }
    ag__free(t);
    if (!st) st = ag__accumulate(out->in[0], ga), ga = NULL;
    return done(st, v, g, ga, NULL);
}

/* ---- packed results --------------------------------------------------------------------------------- */
/* The view [..., rows, cols] (or [..., cols] when !matrix) of the packed y [..., total]
 * at offset off along its last dim; NULL on error. */
static ag_tensor *unpack(ag_tensor *y, int64_t off, int64_t rows, int64_t cols, bool matrix) {
    ag_tensor *part = ag_narrow(y, -1, off, rows * cols);
    if (!part) return NULL;
    ag_shape s = ag_shape_of(y);
    s.ndim--;
    if (matrix) s.dim[s.ndim++] = rows;
    s.dim[s.ndim++] = cols;
    ag_tensor *r = ag_reshape(part, s);
    ag__discard(part);
    return r;
}

/* The packed shape batch + [total] of a batch of matrices a into shape; its ndim. */
static int packed_shape(const ag_tensor *a, int64_t total, int64_t *shape) {
    memcpy(shape, a->shape, sizeof(int64_t) * (size_t)(a->ndim - 2));
    shape[a->ndim - 2] = total;
    return a->ndim - 1;
}

/* ---- qr ------------------------------------------------------------------------------------------- */
static ag_status qr_backward(ag_tensor *out, ag_tensor *gout);
static ag_status qr_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *qr_jvp(ag_tensor *out, ag_tensor *const *tin);
/* tangent (m ≥ n) B = dA·R⁻¹, C = Qᵀ·B, Ω = tril(C, -1) - tril(C, -1)ᵀ: dR = (C - Ω)·R, dQ = B - Q·(C - Ω);
 * m < n: dX, dU so, dV = Qᵀ·(dY - dQ·V) */
/* A = Q·R (reduced, Q and R packed);  m ≥ n: M = R·dRᵀ - dQᵀ·Q, dA = (dQ + Q·copyltu(M))·R⁻ᵀ;
 * m < n, A = [X | Y], R = [U | V]: dX as before with dQ + Y·dVᵀ and dU, dY = Q·dV */
static const ag_op op_qr = {.name = "linalg_qr", .grad_fn = "LinalgQrBackward0", .backward = qr_backward,
                            .saves = AG_SAVES_OUT,
                            .math = "A = Q·R (reduced; Q, R packed);  "
                                    "m ≥ n: M = R·dRᵀ - dQᵀ·Q, dA = (dQ + Q·copyltu(M))·R⁻ᵀ; m < n: A = [X | Y], "
                                    "R = [U | V], dX so with dQ + Y·dVᵀ and dU, dY = Q·dV",
                            .backward_graph = qr_backward_graph, .jvp = qr_jvp,
                            .tangent = "m ≥ n: B = Ȧ·R⁻¹, C = Qᵀ·B, Ω = tril(C, -1) - tril(C, -1)ᵀ: Ṙ = (C - Ω)·R, "
                                       "Q̇ = B - Q·(C - Ω); m < n, A = [X | Y], R = [U | V]: Q̇, U̇ from Ẋ so, "
                                       "V̇ = Qᵀ·(Ẏ - Q̇·V)"};

/* The modes of torch.linalg.qr (the node's attr.i[0]). */
enum { QR_REDUCED, QR_COMPLETE, QR_R };

/* The columns of Q (rows of R) that mode gives an m x n matrix. */
static int64_t qr_cols(int mode, int64_t m, int64_t n) { return mode == QR_COMPLETE || m < n ? m : n; }

/* Element bi of qr_packed: a's matrix transposed into the column-major scratch (m x max(n, c)), geqrf,
 * R out of its upper triangle, orgqr in place, Q transposed out: y's packed Q [m, c] then R [c, n]. */
static lapack_int qr_one(void *ctx, int64_t bi, void *scratch) {
    const struct decomp_job *j = ctx;
    ag_dtype dt = j->dt;
    size_t es = ag_dtype_size(dt);
    int64_t m = j->m, n = j->n, k = j->k, c = j->c, wide = n > c ? n : c;
    char *tau = scratch, *A = tau + (size_t)k * es, *work = A + (size_t)(m * wide) * es;
    char *dst = mat_at(j->y, bi, j->total), *R = dst + (size_t)(m * c) * es;
    transpose_to(dt, m, n, mat_at(j->a, bi, m * n), n, A, m);
    lapack_int info = x_geqrf(dt, (lapack_int)m, (lapack_int)n, A, tau, work, j->lwork);
    if (info) return info;
    transpose_to(dt, n, k, A, m, R, n); /* R: the upper triangle of the first k rows, then zero rows */
    BY_DTYPE(dt, T, {
        T *r = (T *)R;
        for (int64_t i = 0; i < c; i++)
            for (int64_t l = 0; l < (i < k ? i : n); l++) r[i * n + l] = 0;
    });
    info = x_orgqr(dt, (lapack_int)m, (lapack_int)c, (lapack_int)k, A, tau, work, j->lwork); /* Q from the k reflectors */
    if (!info) transpose_to(dt, c, m, A, m, dst, c);
    return info;
}

/* [..., m·c + c·n]: Q [m, c] then R [c, n], c = k = min(m, n), or m when complete. */
static ag_tensor *qr_packed(ag_tensor *a, int mode) {
    const char *op = "linalg_qr";
    if (check_matrix(op, a, false)) return NULL;
    ag_dtype dt = a->dtype;
    int nd = a->ndim;
    int64_t m = a->shape[nd - 2], n = a->shape[nd - 1], k = m < n ? m : n, count = ag__numel(nd - 2, a->shape);
    int64_t c = qr_cols(mode, m, n), shape[AG_MAX_DIMS], total, wide = n > c ? n : c;
    if (check_lapack(op, m, c) || check_lapack(op, m, wide)) return NULL; /* Q of complete mode: m x m */
    total = m * c + c * n;
    int pn = packed_shape(a, total, shape);
    if (ag__check_alloc(op, pn, shape, dt)) return NULL;
    ag_tensor *y = ag__new(dt, pn, shape);
    ag_tensor *w = y ? read_as(a, nd, a->shape) : NULL;
    ag_status st = w ? check_finite(op, w, m * n) : AG_ERR_NOMEM;
    struct decomp_job job = {.dt = dt, .m = m, .n = n, .k = k, .c = c, .total = total, .a = w, .y = y};
    if (!st && k > 0 && count > 0) { /* the larger of geqrf's and orgqr's workspaces */
        double q[2] = {0}, q2[2] = {0};
        char *p = ag__ptr(y);
        lapack_int info = x_geqrf(dt, (lapack_int)m, (lapack_int)n, p, p, q, -1);
        if (!info) info = x_orgqr(dt, (lapack_int)m, (lapack_int)c, (lapack_int)k, p, p, q2, -1);
        st = take_query(op, &job, info, lwork_of(dt, q) > lwork_of(dt, q2) ? q : q2, NULL);
    }
    int64_t bi = 0;
    size_t scratch = (size_t)(k + m * wide) * ag_dtype_size(dt) + work_bytes(dt, job.lwork, 0);
    lapack_int info = st || k == 0 ? 0 : run_batch(count, 4.0 * m * n * k, scratch, qr_one, &job, &bi);
    if (info) st = fail_element(op, bi, info, "");
    ag_release(w);
    if (st) {
        ag__discard(y);
        return NULL;
    }
    if (ag__needs_grad1(a) && !ag__record(y, &op_qr, &a, 1)) return NULL;
    y->attr.i[0] = mode;
    return y;
}

/* AG_OK when the QR node out has a derivative (as PyTorch: not in mode "r", which
 * computes no Q, nor for complete Q of a tall matrix, whose last m - n columns are
 * not determined by A), else AG_ERR_VALUE naming what (backward, forward AD). */
static ag_status qr_differentiable(const ag_tensor *out, const char *what) {
    const ag_tensor *a = out->in[0];
    int64_t m = a->shape[a->ndim - 2], n = a->shape[a->ndim - 1];
    if (out->attr.i[0] == QR_R)
        return ag__fail(AG_ERR_VALUE, "linalg_qr: %s: the derivative of linalg_qr depends on Q, which is not computed "
                        "when mode=\"r\" (as in PyTorch); use mode \"reduced\"", what);
    if (out->attr.i[0] == QR_COMPLETE && m > n)
        return ag__fail(AG_ERR_VALUE, "linalg_qr: %s: QR with mode=\"complete\" of a %lld x %lld matrix (more rows than "
                        "columns) is not differentiable (as in PyTorch); use mode \"reduced\"", what, (long long)m,
                        (long long)n);
    return AG_OK;
}

/* dA [m, n] for m ≥ n from Q [m, n], R [n, n], dQ, dR (contiguous, elements of dt); work holds
 * 3n² + mn.  Returns i + 1 > 0 when R[i, i] is zero (A rank-deficient), as trtri's info. */
static lapack_int qr_grad_deep(ag_dtype dt, int64_t m, int64_t n, const void *Q, const void *R, const void *dQ,
                               const void *dR, void *dA, void *work) {
    size_t es = ag_dtype_size(dt);
    char *M = work, *C = M + (size_t)(n * n) * es, *Ri = C + (size_t)(n * n) * es, *B = Ri + (size_t)(n * n) * es;
    mm_dt(dt, n, n, n, R, false, dR, true, M); /* M = R·dRᵀ - dQᵀ·Q */
    mm_dt(dt, n, m, n, dQ, true, Q, false, C);
    BY_DTYPE(dt, T, {
        T *Mt = (T *)M, *Ct = (T *)C;
        for (int64_t i = 0; i < n * n; i++) Mt[i] -= Ct[i];
        for (int64_t i = 0; i < n; i++) /* copyltu(M): the lower triangle, mirrored */
            for (int64_t j = 0; j < n; j++) Ct[i * n + j] = i >= j ? Mt[i * n + j] : Mt[j * n + i];
    });
    mm_dt(dt, m, n, n, Q, false, C, false, B); /* B = dQ + Q·C */
    BY_DTYPE(dt, T, {
        T *Bt = (T *)B;
        const T *dq = dQ;
        for (int64_t i = 0; i < m * n; i++) Bt[i] += dq[i];
    });
    for (int64_t i = 0; i < n; i++)
        if (get(dt, R, i * n + i) == 0) return (lapack_int)(i + 1);
#if AG_HAVE_CBLAS /* dA = B·R⁻ᵀ: the triangular solve X·Rᵀ = B on the rows, as PyTorch's (strtri of the
                   * column-major lower triangle crashes in OpenBLAS 0.3.21's Prescott kernels at 315) */
    (void)Ri;
    memcpy(dA, B, (size_t)(m * n) * es);
    bool wide = blas_widen(0.5 * (double)m * (double)n * (double)n);
    if (dt == AG_F32)
        cblas_strsm(CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit, (blasint)m, (blasint)n, 1.0f, R,
                    (blasint)n, dA, (blasint)n);
    else
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit, (blasint)m, (blasint)n, 1.0, R,
                    (blasint)n, dA, (blasint)n);
    blas_narrow(wide);
    return 0;
#else
    memcpy(Ri, R, (size_t)(n * n) * es);
    lapack_int info = n ? x_trtri(dt, 'U', (lapack_int)n, Ri) : 0;
    if (!info) mm_dt(dt, m, n, n, B, false, Ri, true, dA); /* B·R⁻ᵀ (R's zeros below the diagonal stay) */
    return info;
#endif
}

/* Columns c0..c0+w-1 of the r x cols matrix X into the contiguous r x w matrix Y (elements of es bytes). */
static void columns(size_t es, const void *X, int64_t r, int64_t cols, int64_t c0, int64_t w, void *Y) {
    for (int64_t i = 0; i < r; i++)
        memcpy((char *)Y + (size_t)(i * w) * es, (const char *)X + (size_t)(i * cols + c0) * es, (size_t)w * es);
}

/* As PyTorch's linalg_qr_backward (mode "reduced"; "complete" of a wide matrix is the same), in the
 * dtype (float32: sgemm and strtri, as PyTorch's). */
static ag_status qr_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *a = out->in[0];
    ag_status differentiable = qr_differentiable(out, "backward");
    if (differentiable) return differentiable;
    ag_dtype dt = out->dtype;
    size_t es = ag_dtype_size(dt);
    int nd = a->ndim;
    int64_t m = a->shape[nd - 2], n = a->shape[nd - 1], k = m < n ? m : n, count = ag__numel(nd - 2, a->shape);
    int64_t total = m * k + k * n;
    ag_tensor *y = read_as(out, out->ndim, out->shape), *g = read_in(gout, out->ndim, out->shape, dt);
    ag_tensor *ga = ag__new_unowned(dt, nd, a->shape, true);
    char *work = ag__alloc_n(11 * k * k + 4 * m * n + 1, es);
    ag_status st = y && g && ga && work ? AG_OK : AG_ERR_NOMEM;
    for (int64_t bi = 0; bi < count && !st && k > 0; bi++) {
        const char *Q = mat_at(y, bi, total), *R = Q + (size_t)(m * k) * es, *dQ = mat_at(g, bi, total),
                   *dR = dQ + (size_t)(m * k) * es;
        char *dA = mat_at(ga, bi, m * n);
        lapack_int info;
        if (m >= n) info = qr_grad_deep(dt, m, n, Q, R, dQ, dR, dA, work);
        else { /* A = [X | Y], R = [U | V]: Y = Q·V */
            int64_t r = n - m;
            char *U = work, *dU = U + (size_t)(m * m) * es, *dQ2 = dU + (size_t)(m * m) * es, *dX = dQ2 + (size_t)(m * m) * es,
                 *V = dX + (size_t)(m * m) * es, *dV = V + (size_t)(m * r) * es, *Y = dV + (size_t)(m * r) * es,
                 *deep = Y + (size_t)(m * r) * es;
            columns(es, R, m, n, 0, m, U);
            columns(es, dR, m, n, 0, m, dU);
            columns(es, R, m, n, m, r, V);
            columns(es, dR, m, n, m, r, dV);
            mm_dt(dt, m, m, r, Q, false, V, false, Y);
            mm_dt(dt, m, r, m, Y, false, dV, true, dQ2); /* dQ + Y·dVᵀ */
            BY_DTYPE(dt, T, {
                T *d2 = (T *)dQ2;
                const T *dq = (const T *)dQ;
                for (int64_t i = 0; i < m * m; i++) d2[i] += dq[i];
            });
            info = qr_grad_deep(dt, m, m, Q, U, dQ2, dU, dX, deep);
            mm_dt(dt, m, m, r, Q, false, dV, false, Y); /* dY = Q·dV */
            for (int64_t i = 0; i < m && !info; i++) {
                memcpy(dA + (size_t)(i * n) * es, dX + (size_t)(i * m) * es, (size_t)m * es);
                memcpy(dA + (size_t)(i * n + m) * es, Y + (size_t)(i * r) * es, (size_t)r * es);
            }
        }
        if (info) st = fail_element("linalg_qr: backward", bi, info, "is rank-deficient (R[%d, %d] is zero): QR has no gradient there");
    }
    ag__free(work);
    if (!st) st = ag__accumulate(a, ga), ga = NULL;
    return done(st, y, g, ga, NULL);
}

/* Q and R, packed (views of p: Q [..., m, c], R [..., c, n]) into *q and *r; NULL on error. */
static ag_tensor *qr_parts(ag_tensor *p, const ag_tensor *a, int mode, ag_tensor **r) {
    int64_t m = a->shape[a->ndim - 2], n = a->shape[a->ndim - 1], c = qr_cols(mode, m, n);
    *r = unpack(p, m * c, c, n, true);
    return unpack(p, 0, m, c, true);
}

/* m ≥ n: dA = (dQ + Q·copyltu(R·dRᵀ - dQᵀ·Q))·R⁻ᵀ, copyltu(M) = tril(M) + tril(M, -1)ᵀ */
static ag_tensor *qr_grad_tall(ag_tensor *q, ag_tensor *r, ag_tensor *gq, ag_tensor *gr) {
    ag_tensor *m = ag_sub(ag_matmul(r, mT(gr)), ag_matmul(mT(gq), q));
    ag_tensor *b = ag_add(gq, ag_matmul(q, ag_add(ag_tril(m, 0), mT(ag_tril(m, -1)))));
    return r && b ? mT(solve_triangular_matrix(r, mT(b), true, false)) : NULL; /* B·R⁻ᵀ = (R⁻¹·Bᵀ)ᵀ */
}

/* m ≥ n as above; m < n, A = [X | Y], R = [U | V]: dX from dQ + Y·dVᵀ and dU, dY = Q·dV */
static ag_status qr_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *a = out->in[0];
    int mode = (int)out->attr.i[0];
    ag_status st = qr_differentiable(out, "backward");
    if (st) return st;
    int64_t m = a->shape[a->ndim - 2], n = a->shape[a->ndim - 1];
    ag_tensor *r, *gr, *q = qr_parts(out, a, mode, &r), *gq = qr_parts(gout, a, mode, &gr);
    if (m >= n) return gave(&gin[0], qr_grad_tall(q, r, gq, gr));
    ag_tensor *u = ag_narrow(r, -1, 0, m), *gu = ag_narrow(gr, -1, 0, m), *gv = ag_narrow(gr, -1, m, n - m);
    ag_tensor *y = ag_narrow(a, -1, m, n - m);
    ag_tensor *gx = qr_grad_tall(q, u, ag_add(gq, ag_matmul(y, mT(gv))), gu), *gy = ag_matmul(q, gv);
    return gave(&gin[0], gx && gy ? ag_cat((ag_tensor *[]){gx, gy}, 2, -1) : NULL);
}

/* m ≥ n: B = dA·R⁻¹, C = Qᵀ·B, Ω = tril(C, -1) - tril(C, -1)ᵀ: dR = (C - Ω)·R, dQ = B - Q·(C - Ω) */
static ag_tensor *qr_tangent_tall(ag_tensor *q, ag_tensor *r, ag_tensor *da, ag_tensor **dr) {
    ag_tensor *rt = mT(r), *b = rt ? mT(solve_triangular_matrix(rt, mT(da), false, false)) : NULL; /* dA·R⁻¹ = (R⁻ᵀ·dAᵀ)ᵀ */
    ag_tensor *c = ag_matmul(mT(q), b), *low = ag_tril(c, -1), *cw = ag_sub(c, ag_sub(low, mT(low)));
    *dr = ag_matmul(cw, r);
    return ag_sub(b, ag_matmul(q, cw));
}

/* m ≥ n as above; m < n, A = [X | Y], R = [U | V]: dQ, dU from dX, dV = Qᵀ·(dY - dQ·V) */
static ag_tensor *qr_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *a = out->in[0], *da = tin[0];
    int mode = (int)out->attr.i[0];
    if (qr_differentiable(out, "forward AD")) return NULL;
    int64_t m = a->shape[a->ndim - 2], n = a->shape[a->ndim - 1];
    ag_tensor *r, *dr, *q = qr_parts(out, a, mode, &r), *dq;
    if (m >= n) dq = qr_tangent_tall(q, r, da, &dr);
    else {
        ag_tensor *du, *v = ag_narrow(r, -1, m, n - m);
        dq = qr_tangent_tall(q, ag_narrow(r, -1, 0, m), ag_narrow(da, -1, 0, m), &du);
        ag_tensor *dv = ag_matmul(mT(q), ag_sub(ag_narrow(da, -1, m, n - m), ag_matmul(dq, v)));
        dr = du && dv ? ag_cat((ag_tensor *[]){du, dv}, 2, -1) : NULL;
    }
    ag_tensor *fq = flat(dq), *fr = flat(dr);
    return fq && fr ? ag_cat((ag_tensor *[]){fq, fr}, 2, -1) : NULL;
}

ag_status ag_linalg_qr(ag_tensor *a, const char *mode, ag_tensor **q, ag_tensor **r) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "linalg_qr", a);
    if (q) *q = NULL;
    if (r) *r = NULL;
    if (!q || !r) return ag__fail(AG_ERR_ARG, "linalg_qr: Q and R must not be NULL");
    int md = !mode || strcmp(mode, "reduced") == 0 ? QR_REDUCED : strcmp(mode, "complete") == 0 ? QR_COMPLETE
           : strcmp(mode, "r") == 0                ? QR_R
                                                   : -1;
    if (md < 0)
        return ag__fail(AG_ERR_ARG, "linalg_qr: mode \"%s\" is not one of \"reduced\", \"complete\", \"r\"", mode);
    if (!a) return ag_last_status() ? ag_last_status() : AG_ERR_ARG;
    ag_tensor *y = qr_packed(a, md), *rv = NULL;
    ag_tensor *qv = y ? qr_parts(y, a, md, &rv) : NULL;
    if (qv && md == QR_R) { /* as PyTorch: an empty Q */
        ag__discard(qv);
        qv = ag_zeros(AG_SHAPE(0), a->dtype);
    }
    ag__discard(y); /* the views keep it */
    if (!qv || !rv) {
        ag__discard(qv);
        ag__discard(rv);
        return ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
    }
    *q = qv;
    *r = rv;
    return AG_OK;
}

/* ---- svd and svdvals ----------------------------------------------------------------------------- */
static ag_status svd_backward(ag_tensor *out, ag_tensor *gout);
static ag_status svd_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *svd_jvp(ag_tensor *out, ag_tensor *const *tin);
/* tangent dP = Uᵀ·dA·V: dS = diag(dP), dU = U·((dP·S + S·dPᵀ) / E) + (dA·V - U·dP)·S⁻¹ (m > k),
 * dV = V·((S·dP + dPᵀ·S) / E) + (dAᵀ·U - V·dPᵀ)·S⁻¹ (n > k), Eⱼₗ = sₗ² - sⱼ² (0 on the diagonal) */
/* A = U·diag(S)·Vᵀ (reduced, packed);  dA = U·(Fᵤ·S + S·Fᵥ + diag(dS))·Vᵀ + (I - U·Uᵀ)·dU·S⁻¹·Vᵀ (m > k)
 * or U·S⁻¹·dVᵀ·(I - V·Vᵀ) (n > k), F = skew(Uᵀ·dU) / E, skew(Vᵀ·dV) / E, Eⱼₗ = sₗ² - sⱼ² */
static const ag_op op_svd = {.name = "linalg_svd", .grad_fn = "LinalgSvdBackward0", .backward = svd_backward,
                             .saves = AG_SAVES_OUT,
                             .math = "A = U·diag(s)·Vᵀ (reduced; U, s, Vᵀ packed);  "
                                     "dA = U·(J·S + S·K + diag(ds))·Vᵀ + (I - U·Uᵀ)·dU·S⁻¹·Vᵀ (m > k) or U·S⁻¹·dVᵀ·(I "
                                     "- V·Vᵀ) (n > k), Jⱼₗ = (Uᵀ·dU - dUᵀ·U)ⱼₗ / (sₗ² - sⱼ²), K likewise with V; "
                                     "full_matrices: U's last m - k columns and Vh's last n - k rows get no gradient",
                             .backward_graph = svd_backward_graph, .jvp = svd_jvp,
                             .tangent = "P = Uᵀ·Ȧ·V: Ṡ = diag(P), U̇ = U·((P·S + S·Pᵀ) ∘ 1/E) + (Ȧ·V - U·P)·S⁻¹ (m > "
                                        "k), V̇h = ((S·P + Pᵀ·S) ∘ 1/E)ᵀ·Vh + S⁻¹·(Uᵀ·Ȧ - P·Vh) (n > k), "
                                        "Eᵢⱼ = sⱼ² - sᵢ² off the diagonal; full_matrices: 0 for U's last m - k "
                                        "columns and Vh's last n - k rows"};

/* The columns of U (mu) and rows of Vh (nv) of the packed SVD of an m x n matrix. */
static void svd_sizes(bool full, int64_t m, int64_t n, int64_t *mu, int64_t *nv) {
    int64_t k = m < n ? m : n;
    *mu = full ? m : k;
    *nv = full ? n : k;
}

/* Element bi of singular: the SVD of a's m x n matrix into y's packed U [m, c], S, Vh [nv, n], or its
 * singular values into vals at bi·k (jobz 'N').  LAPACK is given the tall one of A and Aᵀ (its
 * geqrf path; the wide one's gelqf walks rows of a column-major matrix: 512 x 256 ran 1.3x slower
 * that way): m ≤ n, the buffer as it lies, column-major Aᵀ = V·S·Uᵀ, whose U is Vh row-major and
 * whose Vᵀ is U row-major, so nothing is transposed; m > n, A transposed into the scratch after the
 * workspace, and U and Vᵀ transposed out. */
static lapack_int svd_one(void *ctx, int64_t bi, void *scratch) {
    const struct decomp_job *j = ctx;
    ag_dtype dt = j->dt;
    size_t es = ag_dtype_size(dt);
    int64_t m = j->m, n = j->n, k = j->k, mu = j->c, nv = j->jobz == 'A' ? n : k;
    char *u = j->y ? mat_at(j->y, bi, j->total) : NULL, *s = u ? u + (size_t)(m * mu) * es : j->vals + (size_t)(bi * k) * es;
    char *vh = u ? s + (size_t)k * es : NULL, *a = mat_at(j->a, bi, m * n);
    lapack_int *iw = work_ints(j, scratch);
    if (m <= n)
        return x_gesdd(dt, j->jobz, (lapack_int)n, (lapack_int)m, a, s, vh, (lapack_int)n, u, (lapack_int)mu, scratch, j->lwork,
                       iw);
    char *ac = (char *)(iw + 8 * k), *uc = ac + (size_t)(m * n) * es, *vc = uc + (size_t)(m * mu) * es;
    transpose_to(dt, m, n, a, n, ac, m);
    lapack_int info = x_gesdd(dt, j->jobz, (lapack_int)m, (lapack_int)n, ac, s, uc, (lapack_int)m, vc, (lapack_int)nv, scratch,
                              j->lwork, iw);
    if (!info && u) {
        transpose_to(dt, mu, m, uc, m, u, mu);
        transpose_to(dt, n, nv, vc, nv, vh, n);
    }
    return info;
}

/* The singular values of the matrices of a into s (a's dtype, count·k), and with
 * U and Vᵀ into the packed y when y: [..., m·mu + k + nv·n] (svd_sizes). */
static ag_status singular(const char *op, ag_tensor *a, char *s, ag_tensor *y, bool full) {
    ag_dtype dt = a->dtype;
    size_t es = ag_dtype_size(dt);
    int nd = a->ndim;
    int64_t m = a->shape[nd - 2], n = a->shape[nd - 1], k = m < n ? m : n, count = ag__numel(nd - 2, a->shape), mu, nv;
    svd_sizes(full, m, n, &mu, &nv);
    ag_tensor *w = work_copy(a, nd, a->shape, dt);
    if (!w) return AG_ERR_NOMEM;
    ag_status st = check_finite(op, w, m * n);
    struct decomp_job job = {.dt = dt, .jobz = !y ? 'N' : full ? 'A' : 'S', .m = m, .n = n, .k = k, .c = mu,
                             .total = m * mu + k + nv * n, .a = w, .y = y, .vals = s};
    if (!st && k > 0 && count > 0) { /* the query, for the problem svd_one gives LAPACK */
        double q[2] = {0};
        lapack_int qi[2] = {0}, M = (lapack_int)(m <= n ? n : m), N = (lapack_int)(m <= n ? m : n);
        char *p = ag__ptr(w);
        st = take_query(op, &job, x_gesdd(dt, job.jobz, M, N, p, p, p, M, p, N, q, -1, qi), q, NULL);
    }
    size_t scratch = st ? 0 : work_bytes(dt, job.lwork, 8 * k) + (m > n ? (size_t)(m * n + m * mu + nv * n) * es : 0);
    int64_t bi = 0;
    lapack_int info = st || k == 0 ? 0 : run_batch(count, 6.0 * m * n * k, scratch, svd_one, &job, &bi);
    if (info) st = fail_element(op, bi, info, "did not converge (%d superdiagonals)");
    ag_release(w);
    return st;
}

/* The packed SVD [..., m·mu + k + nv·n]: U [m, mu], S [k], Vh [nv, n] (svd_sizes; full
 * only for a non-square matrix, where it differs). */
static ag_tensor *svd_packed(ag_tensor *a, bool full) {
    const char *op = "linalg_svd";
    if (check_matrix(op, a, false)) return NULL;
    int64_t m = a->shape[a->ndim - 2], n = a->shape[a->ndim - 1], k = m < n ? m : n, shape[AG_MAX_DIMS], mu, nv;
    full = full && m != n;
    svd_sizes(full, m, n, &mu, &nv);
    if (check_lapack(op, m, mu) || check_lapack(op, nv, n)) return NULL;
    int pn = packed_shape(a, m * mu + k + nv * n, shape);
    if (ag__check_alloc(op, pn, shape, a->dtype)) return NULL;
    ag_tensor *y = ag__new(a->dtype, pn, shape);
    if (!y) return NULL;
    if (singular(op, a, NULL, y, full)) {
        ag__discard(y);
        return NULL;
    }
    if (ag__needs_grad1(a) && !ag__record(y, &op_svd, &a, 1)) return NULL;
    y->attr.i[0] = full;
    return y;
}

/* The reduced packed SVD [..., m·k + k + k·n] in the dtype of the packed p of the svd node out (U's
 * first k columns, S, Vh's first k rows): p itself when contiguous and reduced; NULL on ENOMEM. */
static ag_tensor *svd_reduced(const ag_tensor *out, ag_tensor *p) {
    const ag_tensor *a = out->in[0];
    ag_dtype dt = out->dtype;
    size_t es = ag_dtype_size(dt);
    int64_t m = a->shape[a->ndim - 2], n = a->shape[a->ndim - 1], k = m < n ? m : n, mu, nv;
    svd_sizes(out->attr.i[0] != 0, m, n, &mu, &nv);
    ag_tensor *w = read_in(p, p->ndim, p->shape, dt);
    if (!w || mu == k) return w; /* already reduced */
    int64_t shape[AG_MAX_DIMS], count = ag__numel(p->ndim - 1, p->shape), total = m * k + k + k * n;
    memcpy(shape, p->shape, sizeof(int64_t) * (size_t)p->ndim);
    shape[p->ndim - 1] = total;
    ag_tensor *r = ag__new_unowned(dt, p->ndim, shape, false);
    for (int64_t bi = 0; r && bi < count; bi++) {
        const char *src = mat_at(w, bi, m * mu + k + nv * n);
        char *dst = mat_at(r, bi, total);
        for (int64_t i = 0; i < m; i++) memcpy(dst + (size_t)(i * k) * es, src + (size_t)(i * mu) * es, (size_t)k * es); /* U [m, k] */
        memcpy(dst + (size_t)(m * k) * es, src + (size_t)(m * mu) * es, (size_t)(k + k * n) * es); /* S, Vh's first k rows */
    }
    ag_release(w);
    return r;
}

/* As PyTorch's svd_backward (real; full_matrices: of the first k columns of U and rows of Vh), in the
 * dtype (float32: sgemm, as PyTorch's).  A nonzero numerator over a zero gap (a repeated singular
 * value) or a zero singular value that dU or dV reaches beyond the square part is AG_ERR_VALUE
 * (PyTorch gives inf or NaN). */
static ag_status svd_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *a = out->in[0];
    ag_dtype dt = out->dtype;
    int nd = a->ndim;
    int64_t m = a->shape[nd - 2], n = a->shape[nd - 1], k = m < n ? m : n, count = ag__numel(nd - 2, a->shape);
    int64_t total = m * k + k + k * n, big = m > n ? m : n;
    ag_tensor *y = svd_reduced(out, out), *g = svd_reduced(out, gout);
    ag_tensor *ga = ag__new_unowned(dt, nd, a->shape, true);
    char *work = ag__alloc_n(4 * k * k + 3 * big * k + 1, ag_dtype_size(dt));
    ag_status st = y && g && ga && work ? AG_OK : AG_ERR_NOMEM;
    const char *op = "linalg_svd: backward";
    BY_DTYPE(dt, T, {
        for (int64_t bi = 0; bi < count && !st && k > 0; bi++) {
            const T *U = (const T *)mat_at(y, bi, total), *S = U + m * k, *Vh = S + k;
            const T *dU = (const T *)mat_at(g, bi, total), *dS = dU + m * k, *dVh = dS + k;
            T *J = (T *)work, *K = J + k * k, *F = K + k * k, *P = F + k * k, *Tm = P + k * k, *G = Tm + big * k,
              *T2 = G + big * k;
            T *dA = (T *)mat_at(ga, bi, m * n);
            bool du = false, dv = false;
            for (int64_t i = 0; i < m * k; i++) du |= dU[i] != 0;
            for (int64_t i = 0; i < k * n; i++) dv |= dVh[i] != 0;
            if (du) mm_dt(dt, k, m, k, U, true, dU, false, J); /* Uᵀ·dU */
            if (dv) mm_dt(dt, k, n, k, Vh, false, dVh, true, K); /* Vᵀ·dV = Vh·dVhᵀ */
            for (int64_t j = 0; j < k && !st; j++)
                for (int64_t l = 0; l < k; l++) {
                    if (j == l) {
                        F[j * k + j] = dS[j];
                        continue;
                    }
                    T num = (du ? (J[j * k + l] - J[l * k + j]) * S[l] : 0) + (dv ? S[j] * (K[j * k + l] - K[l * k + j]) : 0);
                    T gap = S[l] * S[l] - S[j] * S[j];
                    if (num != 0 && gap == 0) {
                        st = ag__fail(AG_ERR_VALUE, "%s: batch element %lld has the repeated singular value %g (%lld and %lld): "
                                      "the singular vectors' gradient is not defined there (as in PyTorch)",
                                      op, (long long)bi, (double)S[j], (long long)j, (long long)l);
                        break;
                    }
                    F[j * k + l] = num == 0 ? 0 : num / gap;
                }
            for (int64_t j = 0; j < k && !st; j++)
                if (S[j] == 0 && ((m > k && du) || (n > k && dv)))
                    st = ag__fail(AG_ERR_VALUE, "%s: batch element %lld has a zero singular value: the gradient through its "
                                  "singular vectors is not defined (as in PyTorch)", op, (long long)bi);
            if (st) break;
            if (m > k && du) { /* U·F + (I - U·Uᵀ)·dU·S⁻¹, then ·Vh */
                mm_dt(dt, m, k, k, U, false, F, false, Tm);
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < k; j++) G[i * k + j] = dU[i * k + j] / S[j];
                mm_dt(dt, k, m, k, U, true, G, false, P);
                mm_dt(dt, m, k, k, U, false, P, false, T2);
                for (int64_t i = 0; i < m * k; i++) Tm[i] += G[i] - T2[i];
                mm_dt(dt, m, k, n, Tm, false, Vh, false, dA);
            } else if (n > k && dv) { /* F·Vh + S⁻¹·dVh·(I - V·Vᵀ), then U· */
                mm_dt(dt, k, k, n, F, false, Vh, false, Tm);
                for (int64_t j = 0; j < k; j++)
                    for (int64_t i = 0; i < n; i++) G[j * n + i] = dVh[j * n + i] / S[j];
                mm_dt(dt, k, n, k, G, false, Vh, true, P);
                mm_dt(dt, k, k, n, P, false, Vh, false, T2);
                for (int64_t i = 0; i < k * n; i++) Tm[i] += G[i] - T2[i];
                mm_dt(dt, m, k, n, U, false, Tm, false, dA);
            } else {
                mm_dt(dt, m, k, k, U, false, F, false, Tm);
                mm_dt(dt, m, k, n, Tm, false, Vh, false, dA);
            }
        }
    });
    ag__free(work);
    if (!st) st = ag__accumulate(a, ga), ga = NULL;
    return done(st, y, g, ga, NULL);
}

/* U [..., m, k], S, Vh [..., k, n] of the packed p of the svd of a (the first k columns
 * of U and rows of Vh when full: the part the derivatives see). */
static ag_tensor *svd_parts(ag_tensor *p, const ag_tensor *a, bool full, ag_tensor **s, ag_tensor **vh) {
    int64_t m = a->shape[a->ndim - 2], n = a->shape[a->ndim - 1], k = m < n ? m : n, mu, nv;
    svd_sizes(full, m, n, &mu, &nv);
    ag_tensor *u = unpack(p, 0, m, mu, true);
    *s = unpack(p, m * mu, 1, k, false);
    *vh = unpack(p, m * mu + k, nv, n, true);
    if (nv > k) *vh = ag_narrow(*vh, -2, 0, k);
    return mu > k ? ag_narrow(u, -1, 0, k) : u;
}

/* dA = U·(J ∘ 1/E · S + S · K ∘ 1/E + diag(dS))·Vh, J = skew(Uᵀ·dU), K = skew(Vh·dVhᵀ),
 * Eⱼₗ = sₗ² - sⱼ², plus (dU - U·Uᵀ·dU)·S⁻¹·Vh (m > k) or U·S⁻¹·(dVh - dVh·Vhᵀ·Vh) (n > k);
 * U·diag(dS)·Vh alone when dU and dVh are zero (the singular values only) */
static ag_status svd_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *a = out->in[0];
    bool full = out->attr.i[0] != 0;
    int64_t m = a->shape[a->ndim - 2], n = a->shape[a->ndim - 1], k = m < n ? m : n;
    ag_tensor *s, *vh, *gs, *gvh, *u = svd_parts(out, a, full, &s, &vh), *gu = svd_parts(gout, a, full, &gs, &gvh);
    if (!u || !s || !vh || !gu || !gs || !gvh) return made(NULL);
    bool du = any_nonzero_t(gu), dv = any_nonzero_t(gvh);
    if (!du && !dv) return gave(&gin[0], ag_matmul(ag_mul(u, ag_unsqueeze(gs, -2)), vh));
    ag_tensor *row = ag_unsqueeze(s, -2), *col = ag_unsqueeze(s, -1), *inner = ag_diag_embed(gs, 0, -2, -1), *num = NULL;
    if (du) num = ag_mul(skew(ag_matmul(mT(u), gu)), row);
    if (dv) num = ag__jvp_add(num, ag_mul(col, skew(ag_matmul(vh, mT(gvh)))));
    if (!num || !row || !col) return made(NULL);
    const char *op = "linalg_svd: backward";
    ag_status st = check_repeated(op, false, s, num);
    if (!st && ((m > k && du) || (n > k && dv))) st = check_zero_singular(op, s);
    if (st) return st;
    inner = ag_add(inner, ag_mul(num, inverse_gaps(ag_sub(ag_square(row), ag_square(col)))));
    ag_tensor *g;
    if (m > k && du) /* (U·inner + (dU - U·Uᵀ·dU)·S⁻¹)·Vh */
        g = ag_matmul(ag_add(ag_matmul(u, inner), ag_div(ag_sub(gu, ag_matmul(u, ag_matmul(mT(u), gu))), row)), vh);
    else if (n > k && dv) /* U·(inner·Vh + S⁻¹·(dVh - dVh·Vhᵀ·Vh)) */
        g = ag_matmul(u, ag_add(ag_matmul(inner, vh), ag_div(ag_sub(gvh, ag_matmul(ag_matmul(gvh, mT(vh)), vh)), col)));
    else
        g = ag_matmul(ag_matmul(u, inner), vh);
    return gave(&gin[0], g);
}

/* dP = Uᵀ·dA·V: dS = diag(dP), dU = U·((dP·S + S·dPᵀ) ∘ 1/E) + (dA·V - U·dP)·S⁻¹ (m > k),
 * dVh = ((S·dP + dPᵀ·S) ∘ 1/E)ᵀ·Vh + S⁻¹·(Uᵀ·dA - dP·Vh) (n > k); full_matrices: zero
 * tangents for U's last m - k columns and Vh's last n - k rows, as PyTorch */
static ag_tensor *svd_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *a = out->in[0], *da = tin[0];
    bool full = out->attr.i[0] != 0;
    int64_t m = a->shape[a->ndim - 2], n = a->shape[a->ndim - 1], k = m < n ? m : n;
    ag_tensor *s, *vh, *u = svd_parts(out, a, full, &s, &vh);
    ag_tensor *row = ag_unsqueeze(s, -2), *col = ag_unsqueeze(s, -1), *dav = ag_matmul(da, mT(vh)); /* dA·V */
    ag_tensor *dp_ = ag_matmul(mT(u), dav), *dpt = mT(dp_);
    ag_tensor *nu = ag_add(ag_mul(dp_, row), ag_mul(col, dpt)), *nv = ag_add(ag_mul(col, dp_), ag_mul(dpt, row));
    if (!nu || !nv) return NULL;
    const char *op = "linalg_svd: forward AD";
    if (check_repeated(op, false, s, nu) || check_repeated(op, false, s, nv)) return NULL;
    if (m != n && check_zero_singular(op, s)) return NULL;
    ag_tensor *f = inverse_gaps(ag_sub(ag_square(row), ag_square(col)));
    ag_tensor *du = ag_matmul(u, ag_mul(nu, f)), *dvh = ag_matmul(mT(ag_mul(nv, f)), vh);
    if (m > k) du = ag_add(du, ag_div(ag_sub(dav, ag_matmul(u, dp_)), row));
    if (n > k) dvh = ag_add(dvh, ag_div(ag_sub(ag_matmul(mT(u), da), ag_matmul(dp_, vh)), col));
    if (full && du && dvh) { /* the rest of U's columns and Vh's rows: zero */
        ag_shape su = ag_shape_of(du), sv = ag_shape_of(dvh);
        su.dim[su.ndim - 1] = m - k;
        sv.dim[sv.ndim - 2] = n - k;
        ag_tensor *zu = ag_zeros(su, du->dtype), *zv = ag_zeros(sv, dvh->dtype);
        du = !zu ? NULL : m > k ? ag_cat((ag_tensor *[]){du, zu}, 2, -1) : du;
        dvh = !zv ? NULL : n > k ? ag_cat((ag_tensor *[]){dvh, zv}, 2, -2) : dvh;
    }
    ag_tensor *fu = flat(du), *fv = flat(dvh), *ds = ag_diagonal(dp_, 0, -2, -1);
    return fu && fv && ds ? ag_cat((ag_tensor *[]){fu, ds, fv}, 3, -1) : NULL;
}

ag_status ag_linalg_svd(ag_tensor *a, bool full_matrices, ag_tensor **u, ag_tensor **s, ag_tensor **vh) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "linalg_svd", a);
    if (u) *u = NULL;
    if (s) *s = NULL;
    if (vh) *vh = NULL;
    if (!u || !s || !vh) return ag__fail(AG_ERR_ARG, "linalg_svd: U, S and Vh must not be NULL");
    if (!a) return ag_last_status() ? ag_last_status() : AG_ERR_ARG;
    ag_tensor *y = svd_packed(a, full_matrices);
    int64_t m = y ? a->shape[a->ndim - 2] : 0, n = y ? a->shape[a->ndim - 1] : 0, k = m < n ? m : n, mu = 0, nv = 0;
    svd_sizes(y && y->attr.i[0], m, n, &mu, &nv);
    ag_tensor *uv = y ? unpack(y, 0, m, mu, true) : NULL, *sv = y ? unpack(y, m * mu, 1, k, false) : NULL;
    ag_tensor *vv = y ? unpack(y, m * mu + k, nv, n, true) : NULL;
    ag__discard(y); /* the views keep it */
    if (!uv || !sv || !vv) {
        ag__discard(uv);
        ag__discard(sv);
        ag__discard(vv);
        return ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
    }
    *u = uv;
    *s = sv;
    *vh = vv;
    return AG_OK;
}

ag_tensor *ag_linalg_svdvals(ag_tensor *a) {
    AG_CHECK_HANDLES(NULL, "linalg_svdvals", a);
    if (!a) return NULL;
    if (ag__needs_grad1(a)) { /* through the SVD's packed result: its adjoint with dU = dV = 0 */
        ag_tensor *u, *s, *vh;
        if (ag_linalg_svd(a, false, &u, &s, &vh)) return NULL;
        ag__discard(u);
        ag__discard(vh);
        return s;
    }
    const char *op = "linalg_svdvals";
    if (check_matrix(op, a, false)) return NULL;
    int64_t m = a->shape[a->ndim - 2], n = a->shape[a->ndim - 1], shape[AG_MAX_DIMS];
    ag_tensor *y = ag__new(a->dtype, packed_shape(a, m < n ? m : n, shape), shape);
    if (y && singular(op, a, ag__ptr(y), NULL, false)) {
        ag__discard(y);
        return NULL;
    }
    return y;
}

/* The cut-off below which singular values count as zero: max(atol, rtol·σmax), rtol < 0
 * meaning PyTorch's default (eps·max(m, n) when atol <= 0, else 0). */
static double cutoff(ag_dtype dt, int64_t m, int64_t n, double atol, double rtol, double smax) {
    if (rtol < 0) rtol = atol > 0 ? 0 : (dt == AG_F32 ? FLT_EPSILON : DBL_EPSILON) * (double)(m > n ? m : n);
    return fmax(atol, rtol * smax);
}

ag_tensor *ag_linalg_matrix_rank(ag_tensor *a, double atol, double rtol, bool hermitian) {
    AG_CHECK_HANDLES(NULL, "linalg_matrix_rank", a);
    if (!a) return NULL;
    const char *op = "linalg_matrix_rank";
    if (check_matrix(op, a, hermitian)) return NULL;
    ag_dtype dt = a->dtype;
    int nd = a->ndim;
    int64_t m = a->shape[nd - 2], n = a->shape[nd - 1], k = m < n ? m : n, count = ag__numel(nd - 2, a->shape);
    ag_tensor *y = ag__new(AG_I64, nd - 2, a->shape);
    char *s = y ? ag__alloc_n(count * k + 1, ag_dtype_size(dt)) : NULL;
    ag_status st = !s ? AG_ERR_NOMEM : hermitian ? eigen(op, a, 'L', s, k, NULL) : singular(op, a, s, NULL, false);
    for (int64_t bi = 0; bi < count && !st; bi++) {
        double smax = 0;
        for (int64_t i = 0; i < k; i++) smax = fmax(smax, fabs(get(dt, s, bi * k + i)));
        double tol = cutoff(dt, m, n, atol, rtol, smax);
        int64_t rank = 0;
        for (int64_t i = 0; i < k; i++) rank += fabs(get(dt, s, bi * k + i)) > tol;
        ((int64_t *)ag__ptr(y))[bi] = rank;
    }
    ag__free(s);
    if (st) {
        ag__discard(y);
        return NULL;
    }
    return y;
}

/* ---- pinv and lstsq -------------------------------------------------------------------------------- */
static ag_status pinv_backward(ag_tensor *out, ag_tensor *gout);
static ag_status pinv_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *pinv_jvp(ag_tensor *out, ag_tensor *const *tin);
/* tangent dP = -P·dA·P + P·Pᵀ·dAᵀ·(I - A·P) + (I - P·A)·dAᵀ·Pᵀ·P (A's rank kept) */
/* P = A⁺ = V·diag(1/σ, σ > tol)·Uᵀ;  K = dPᵀ·P: dA = -(P·K)ᵀ + K·Pᵀ - A·P·K·Pᵀ + Pᵀ·P·(dPᵀ - K·A) */
static const ag_op op_pinv = {.name = "linalg_pinv", .grad_fn = "LinalgPinvBackward0", .backward = pinv_backward,
                              .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                              .math = "P = A⁺ = V·diag(1/σ for σ > tol)·Uᵀ (SVD);  "
                                      "K = dPᵀ·P, dA = -(P·K)ᵀ + K·Pᵀ - A·P·K·Pᵀ + Pᵀ·P·(dPᵀ - K·A)",
                              .backward_graph = pinv_backward_graph, .jvp = pinv_jvp,
                              .tangent = "Ṗ = -P·Ȧ·P + P·Pᵀ·Ȧᵀ·(I - A·P) + (I - P·A)·Ȧᵀ·Pᵀ·P"};

ag_tensor *ag_linalg_pinv(ag_tensor *a, double atol, double rtol) {
    AG_CHECK_HANDLES(NULL, "linalg_pinv", a);
    if (!a) return NULL;
    const char *op = "linalg_pinv";
    if (check_matrix(op, a, false)) return NULL;
    if (isnan(atol) || isnan(rtol))
        return ag__fail_null(AG_ERR_ARG, "linalg_pinv: atol and rtol must not be NaN");
    ag_dtype dt = a->dtype;
    int nd = a->ndim;
    int64_t m = a->shape[nd - 2], n = a->shape[nd - 1], k = m < n ? m : n, count = ag__numel(nd - 2, a->shape);
    int64_t shape[AG_MAX_DIMS], total = m * k + k + k * n;
    memcpy(shape, a->shape, sizeof(int64_t) * (size_t)nd);
    shape[nd - 2] = n, shape[nd - 1] = m;
    ag_tensor *y = ag__new(dt, nd, shape);
    int64_t pshape[AG_MAX_DIMS];
    int pn = packed_shape(a, total, pshape);
    ag_tensor *usv = y ? ag__new_unowned(dt, pn, pshape, false) : NULL; /* U, s, Vᵀ of each matrix */
    ag_status st = usv ? singular(op, a, NULL, usv, false) : AG_ERR_NOMEM;
    /* in the dtype, as PyTorch's: W = diag(1/σ over σ > tol, else 0)·Vᵀ [k, n], then P = Wᵀ·Uᵀ, one
     * product (sgemm for float32; float64 work and dgemm, then a rounding, before session 12) */
    char *W = st || m == 0 || n == 0 ? NULL : ag__alloc_n(k * n + 1, ag_dtype_size(dt));
    if (!st && m > 0 && n > 0 && !W) st = AG_ERR_NOMEM;
    for (int64_t bi = 0; bi < count && !st && m > 0 && n > 0; bi++) { /* else P is empty */
        const char *U = mat_at(usv, bi, total);
        int64_t s0 = m * k, v0 = m * k + k;
        double tol = cutoff(dt, m, n, atol, rtol, k ? get(dt, U, s0) : 0);
        BY_DTYPE(dt, T, {
            const T *S = (const T *)U + s0, *Vh = (const T *)U + v0;
            T *w = (T *)W;
            for (int64_t l = 0; l < k; l++) {
                T sl = S[l];
                bool keep = sl > tol;
                for (int64_t i = 0; i < n; i++) w[l * n + i] = keep ? Vh[l * n + i] / sl : 0;
            }
        });
        mm_dt(dt, n, k, m, W, true, U, true, mat_at(y, bi, n * m)); /* Pᵢⱼ = Σₗ Vᵢₗ·(1/σₗ)·Uⱼₗ */
    }
    ag__free(W);
    ag_release(usv);
    if (st) {
        ag__discard(y);
        return NULL;
    }
    if (ag__needs_grad1(a) && !ag__record(y, &op_pinv, &a, 1)) return NULL;
    return y;
}

/* As PyTorch's pinv_backward, in the dtype (float32: sgemm, as PyTorch's), in its two forms: products
 * through n x n matrices for a tall A, m x m ones otherwise. */
static ag_status pinv_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *a = out->in[0];
    ag_dtype dt = a->dtype;
    int nd = a->ndim;
    int64_t m = a->shape[nd - 2], n = a->shape[nd - 1], count = ag__numel(nd - 2, a->shape), big = m > n ? m : n;
    ag_tensor *av = read_as(a, nd, a->shape), *p = read_as(out, nd, out->shape), *g = read_as(gout, nd, out->shape);
    ag_tensor *ga = ag__new_unowned(dt, nd, a->shape, false);
    char *work = ag__alloc_n((m > n ? 3 * n * n + 3 * m * n : 4 * big * big) + 1, ag_dtype_size(dt));
    ag_status st = av && p && g && ga && work ? AG_OK : AG_ERR_NOMEM;
    for (int64_t bi = 0; bi < count && !st && m > 0 && n > 0; bi++)
        BY_DTYPE(dt, T, {
            const T *A = (const T *)mat_at(av, bi, m * n), *P = (const T *)mat_at(p, bi, n * m);
            const T *dP = (const T *)mat_at(g, bi, n * m);
            T *dA = (T *)mat_at(ga, bi, m * n), *K = (T *)work, *KPt = K + big * big, *X = KPt + big * big, *Y = X + big * big;
            if (m > n) { /* tall: PyTorch's other form, K = P·dPᵀ [n, n]: half the m x m form's flops */
                T *PPt = K + n * n, *PA = PPt + n * n, *PtK = PA + n * n, *KP = PtK + m * n, *Z = KP + n * m;
                mm_dt(dt, n, m, n, P, false, dP, true, K);    /* K = P·dPᵀ */
                mm_dt(dt, m, n, n, P, true, K, false, PtK);   /* Pᵀ·K [m, n] */
                mm_dt(dt, n, n, m, K, false, P, false, KP);   /* K·P [n, m] */
                mm_dt(dt, m, n, n, A, false, K, false, Z);    /* dPᵀ - A·K [m, n] */
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) Z[i * n + j] = dP[j * m + i] - Z[i * n + j];
                mm_dt(dt, n, m, n, P, false, P, true, PPt);   /* P·Pᵀ [n, n] */
                mm_dt(dt, m, n, n, Z, false, PPt, false, dA); /* dA = (dPᵀ - A·K)·P·Pᵀ */
                mm_dt(dt, n, m, n, P, false, A, false, PA);   /* P·A [n, n] */
                mm_dt(dt, m, n, n, PtK, false, PA, false, Z); /* Pᵀ·K·P·A */
                for (int64_t i = 0; i < m; i++) /* + Pᵀ·K - Pᵀ·K·P·A - (K·P)ᵀ */
                    for (int64_t j = 0; j < n; j++) dA[i * n + j] += PtK[i * n + j] - Z[i * n + j] - KP[j * m + i];
            } else { /* K = dPᵀ·P [m, m] */
                mm_dt(dt, m, n, m, dP, true, P, false, K);
                mm_dt(dt, m, m, n, K, false, P, true, KPt);    /* K·Pᵀ [m, n] */
                mm_dt(dt, n, m, m, P, false, K, false, X);     /* P·K [n, m] */
                for (int64_t i = 0; i < m; i++)                /* dA = -(P·K)ᵀ + K·Pᵀ */
                    for (int64_t j = 0; j < n; j++) dA[i * n + j] = KPt[i * n + j] - X[j * m + i];
                mm_dt(dt, m, n, m, A, false, P, false, X);     /* A·P [m, m] */
                mm_dt(dt, m, m, n, X, false, KPt, false, Y);   /* - A·P·K·Pᵀ */
                for (int64_t i = 0; i < m * n; i++) dA[i] -= Y[i];
                mm_dt(dt, m, m, n, K, false, A, false, Y);     /* dPᵀ - K·A [m, n] */
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) Y[i * n + j] = dP[j * m + i] - Y[i * n + j];
                mm_dt(dt, m, n, m, P, true, P, false, X);      /* Pᵀ·P [m, m] */
                mm_dt(dt, m, m, n, X, false, Y, false, K);     /* + Pᵀ·P·(dPᵀ - K·A) */
                for (int64_t i = 0; i < m * n; i++) dA[i] += K[i];
            }
        });
    ag__free(work);
    if (!st) st = ag__accumulate(a, ga), ga = NULL;
    return done(st, av, p, g, ga);
}

/* K = dPᵀ·P: dA = -(P·K)ᵀ + K·Pᵀ - A·P·K·Pᵀ + Pᵀ·P·(dPᵀ - K·A) */
static ag_status pinv_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *a = out->in[0], *p = out, *pt = mT(out), *k = ag_matmul(mT(gout), p), *kpt = ag_matmul(k, pt);
    ag_tensor *g = ag_add(ag_sub(kpt, mT(ag_matmul(p, k))), ag_neg(ag_matmul(ag_matmul(a, p), kpt)));
    return gave(&gin[0], ag_add(g, ag_matmul(ag_matmul(pt, p), ag_sub(mT(gout), ag_matmul(k, a)))));
}

/* dP = -P·dA·P + P·Pᵀ·dAᵀ·(I - A·P) + (I - P·A)·dAᵀ·Pᵀ·P */
static ag_tensor *pinv_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *a = out->in[0], *p = out, *pt = mT(out), *dat = mT(tin[0]);
    ag_tensor *left = ag_matmul(ag_matmul(p, pt), dat), *right = ag_matmul(dat, ag_matmul(pt, p)); /* P·Pᵀ·dAᵀ, dAᵀ·Pᵀ·P */
    ag_tensor *t = ag_sub(ag_sub(left, ag_matmul(ag_matmul(left, a), p)), ag_matmul(ag_matmul(p, tin[0]), p));
    return ag_sub(ag_add(t, right), ag_matmul(ag_matmul(p, a), right));
}

ag_tensor *ag_linalg_lstsq(ag_tensor *a, ag_tensor *b, double rcond) {
    AG_CHECK_HANDLES(NULL, "linalg_lstsq", a, b);
    if (!a || !b) return NULL;
    const char *op = "linalg_lstsq";
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (ag__check_float(op, a, b) || check_matrix(op, a, false) || check_matrix(op, b, false)) return NULL;
    if (b->shape[b->ndim - 2] != a->shape[a->ndim - 2])
        return ag__fail_null(AG_ERR_SHAPE, "linalg_lstsq: A %s and B %s: B needs %lld rows", ag__tshape(s1, a),
                             ag__tshape(s2, b), (long long)a->shape[a->ndim - 2]);
    if (ag__composite_begin(op)) return NULL;
    ag_tensor *p = ag_linalg_pinv(a, 0, rcond);
    return ag__composite_end(p ? ag_matmul(p, b) : NULL);
}

/* ---- composites: matrix_power, cross, vecdot ------------------------------------------------------- */
/* Aⁿ by repeated squaring (n < 0: (A⁻¹)^|n|, n = 0: the identity); the gradient is matmul's (and inv's). */
ag_tensor *ag_linalg_matrix_power(ag_tensor *a, int64_t n) {
    AG_CHECK_HANDLES(NULL, "linalg_matrix_power", a);
    if (!a) return NULL;
    const char *op = "linalg_matrix_power";
    if (check_matrix(op, a, true)) return NULL;
    if (n == INT64_MIN) return ag__fail_null(AG_ERR_ARG, "linalg_matrix_power: n = %lld has no positive counterpart", (long long)n);
    if (ag__composite_begin(op)) return NULL;
    ag_tensor *base = n < 0 ? ag_linalg_inv(a) : a, *y = NULL;
    if (n == 0) { /* the identity over a's batch (no gradient reaches a) */
        ag_tensor *e = ag_eye(a->shape[a->ndim - 1], a->dtype);
        return ag__composite_end(e ? ag_clone(ag_expand(e, ag_shape_of(a))) : NULL);
    }
    bool failed = !base;
    for (uint64_t k = n < 0 ? (uint64_t)-n : (uint64_t)n; !failed && k; k >>= 1) {
        if (k & 1) failed = !(y = y ? ag_matmul(y, base) : base);
        if (!failed && k > 1) failed = !(base = ag_matmul(base, base));
    }
    if (failed) y = NULL;
    else if (y == a) y = ag_clone(a); /* A¹: a new tensor, as torch */
    return ag__composite_end(y);
}

/* a × b along dim (size 3), broadcast: (a₁b₂ - a₂b₁, a₂b₀ - a₀b₂, a₀b₁ - a₁b₀). */
ag_tensor *ag_linalg_cross(ag_tensor *a, ag_tensor *b, int dim) {
    AG_CHECK_HANDLES(NULL, "linalg_cross", a, b);
    if (!a || !b) return NULL;
    const char *op = "linalg_cross";
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    int nd;
    int64_t shape[AG_MAX_DIMS];
    if (ag__check_float(op, a, b) || ag__broadcast_shape(op, a, b, &nd, shape)) return NULL;
    int d = ag__dim(op, dim, nd);
    if (d < 0) return NULL;
    if (shape[d] != 3)
        return ag__fail_null(AG_ERR_SHAPE, "linalg_cross: %s x %s: dim %d must have size 3 (has %lld)", ag__tshape(s1, a),
                             ag__tshape(s2, b), dim, (long long)shape[d]);
    if (ag__composite_begin(op)) return NULL;
    ag_shape bs = {nd, {0}};
    memcpy(bs.dim, shape, sizeof(int64_t) * (size_t)nd);
    ag_tensor *x = ag_expand(a, bs), *y = ag_expand(b, bs), *c[3] = {NULL, NULL, NULL};
    for (int i = 0; x && y && i < 3; i++) {
        int j = (i + 1) % 3, k = (i + 2) % 3;
        c[i] = ag_sub(ag_mul(ag_select(x, d, j), ag_select(y, d, k)), ag_mul(ag_select(x, d, k), ag_select(y, d, j)));
    }
    return ag__composite_end(c[0] && c[1] && c[2] ? ag_stack(c, 3, d) : NULL);
}

/* Σ x·y along dim, broadcast (real tensors: torch.linalg.vecdot). */
ag_tensor *ag_linalg_vecdot(ag_tensor *x, ag_tensor *y, int dim) {
    AG_CHECK_HANDLES(NULL, "linalg_vecdot", x, y);
    if (!x || !y) return NULL;
    if (ag__check_float("linalg_vecdot", x, y)) return NULL;
    if (ag__composite_begin("linalg_vecdot")) return NULL;
    ag_tensor *p = ag_mul(x, y);
    return ag__composite_end(p ? ag_sum_dim(p, dim, false) : NULL);
}

/* ---- vector_norm and matrix_norm ------------------------------------------------------------------- */
/* x's dims reordered: the kept ones (in order) then the reduced ones, as a view's
 * shape and strides (perm[i] is the dim of x at position i); the product of the
 * reduced sizes into *inner. */
static void kept_then_reduced(const ag_tensor *x, const bool *reduced, int *perm, int64_t *shape, int64_t *stride,
                              int64_t *inner) {
    int p = 0;
    *inner = 1;
    for (int pass = 0; pass < 2; pass++)
        for (int d = 0; d < x->ndim; d++)
            if (reduced[d] == (pass == 1)) {
                perm[p] = d, shape[p] = x->shape[d], stride[p] = x->stride[d], p++;
                if (pass) *inner *= x->shape[d];
            }
}

/* x reordered (kept dims, then reduced) into a contiguous float64 work tensor. */
static ag_tensor *reordered_f64(ag_tensor *x, const bool *reduced, int64_t *inner) {
    int perm[AG_MAX_DIMS];
    int64_t shape[AG_MAX_DIMS], stride[AG_MAX_DIMS];
    kept_then_reduced(x, reduced, perm, shape, stride, inner);
    ag_tensor *v = ag__new_view_unowned(x, x->ndim, shape, stride, x->offset);
    ag_tensor *w = v ? f64(v, x->ndim, shape) : NULL;
    ag_release(v);
    return w;
}

/* t^p for t >= 0 (or NaN): products and square roots for the p that norms use most (3, 4, ±½,
 * 1.5 and 2, within 2 float64 ulps of pow, and sqrt's within 1), pow otherwise; libm's pow was
 * ~20 ns an element (the 3-norm of [2, 128, 1024] over dims 0 and 2, one thread: 5.3 ms). */
static inline double pow_norm(double t, double p) {
    if (p == 2) return t * t;
    if (p == 3) return t * t * t;
    if (p == 4) return (t * t) * (t * t);
    if (p == 0.5) return sqrt(t);
    if (p == 1.5) return t * sqrt(t);
    if (p == -0.5) return 1 / sqrt(t);
    return pow(t, p);
}

/* Whether NAME_terms (NORM_KERNELS) computes |v|^p for this p without pow (pow_norm's products
 * and roots). */
static bool norm_terms_exact(double p) { return p == 2 || p == 3 || p == 4 || p == 0.5 || p == 1.5 || p == -0.5; }

/* NAME_max(v, n): max |v[i]| of the n values (of type T), 0 for none, NaN passed over as fmax does
 * (a select no NaN wins, in eight lanes: the order of a max changes no bits).
 * NAME_terms(v, n, m, p, t): t[i] = pow_norm(|v[i] / m|, p), m > 0, for the p of norm_terms_exact,
 * the same operations as pow_norm's one by one in vectors (|v / m|, not |v| / m: the sign of a
 * NaN).  (The 0.5-norm along dim -1 of [512, 512] float32, one thread: 1.40 ms with libm's fmax
 * and a scalar loop, 0.38 ms; see docs/benchmarks.md, "Session 20", vnorm20.) */
#define NORM_KERNELS(NAME, T)                                                                         \
    AG_VEC_CLONES_512 static double NAME##_max(const T *v, int64_t n) {                               \
        double mx[8] = {0, 0, 0, 0, 0, 0, 0, 0}, m = 0;                                               \
        int64_t i = 0;                                                                                \
        for (; i < n - n % 8; i += 8)                                                                 \
            for (int k = 0; k < 8; k++) {                                                             \
                const double a = fabs((double)v[i + k]);                                              \
                mx[k] = a > mx[k] ? a : mx[k];                                                        \
            }                                                                                         \
        for (; i < n; i++) {                                                                          \
            const double a = fabs((double)v[i]);                                                      \
            m = a > m ? a : m;                                                                        \
        }                                                                                             \
        for (int k = 0; k < 8; k++) m = mx[k] > m ? mx[k] : m;                                        \
        return m;                                                                                     \
    }                                                                                                 \
    AG_VEC_CLONES_512 static void NAME##_terms(const T *v, int64_t n, double m, double p, double *t) { \
        if (p == 0.5) NORM_TERMS_LOOP(sqrt(a));                                                       \
        else if (p == 1.5) NORM_TERMS_LOOP(a * sqrt(a));                                              \
        else if (p == -0.5) NORM_TERMS_LOOP(1 / sqrt(a));                                             \
        else if (p == 2) NORM_TERMS_LOOP(a * a);                                                      \
        else if (p == 3) NORM_TERMS_LOOP(a * a * a);                                                  \
        else NORM_TERMS_LOOP((a * a) * (a * a));                                                      \
    }
/* t[i] = the expression POW of a = |v[i] / m| over the n values (NAME_terms' loop, in vectors). */
#define NORM_TERMS_LOOP(POW)                                                                          \
    do {                                                                                              \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                         \
            const double a = fabs((double)v[i] / m);                                                  \
            t[i] = (POW);                                                                             \
        }                                                                                             \
    } while (0)
NORM_KERNELS(norm_k, double)
NORM_KERNELS(norm_k_f32, float)

/* NAME(v, n, p), v the n values (of type T) of one row: their ord-norm (PyTorch's vector_norm),
 * computed in float64: max|v| for inf, min|v| for -inf, the count of non-zeros for 0, else
 * (Σ|v|^p)^(1/p), scaled by max|v| for p > 0 so that no power overflows or underflows (fmax and
 * fmin pass over NaN).  For p > 0 a row of zeros gives 0 and one with an inf inf, NaN if it holds
 * a NaN, as PyTorch (the scaled sum gave inf/inf = NaN, and 0 for [NaN, 0]).  The terms of the p
 * of norm_terms_exact are computed in vectors, 256 at a time, and added one by one in order as
 * the scalar loop did: the same bits.  For float32 it reads x itself: no float64 copy of x (the
 * inf-norm of [5, 52428], one thread: see docs/benchmarks.md, "Session 11"). */
#define NORM_OF(NAME, T, K)                                                                           \
    static double NAME(const T *v, int64_t n, double p) {                                             \
        double acc = 0, m = 0;                                                                        \
        if (p < 0 && isinf(p)) {                                                                      \
            double lo = INFINITY;                                                                     \
            for (int64_t i = 0; i < n; i++) lo = fmin(lo, fabs((double)v[i]));                        \
            return lo;                                                                                \
        }                                                                                             \
        if (p == 0) {                                                                                 \
            for (int64_t i = 0; i < n; i++) acc += v[i] != 0;                                         \
            return acc;                                                                               \
        }                                                                                             \
        if (p > 0) m = K##_max(v, n);                                                                 \
        if (isinf(p)) return m;                                                                       \
        if (p > 0 && (m == 0 || isinf(m))) { /* all 0 or an inf: 0 or inf, NaN if a NaN (as PyTorch) */   \
            for (int64_t i = 0; i < n; i++)                                                           \
                if (isnan(v[i])) return NAN;                                                          \
            return m;                                                                                 \
        }                                                                                             \
        const double s = p > 0 ? m : 1; /* |v|/1 is |v|: p < 0's unscaled terms */                   \
        if (norm_terms_exact(p)) {                                                                    \
            double t[256];                                                                            \
            for (int64_t b = 0; b < n; b += 256) {                                                    \
                const int64_t nb = n - b < 256 ? n - b : 256;                                         \
                K##_terms(v + b, nb, s, p, t);                                                        \
                for (int64_t i = 0; i < nb; i++) acc += t[i];                                         \
            }                                                                                         \
        } else                                                                                        \
            for (int64_t i = 0; i < n; i++) acc += pow_norm(fabs((double)v[i] / s), p);               \
        if (p < 0) return pow(acc, 1 / p); /* a zero makes acc inf, the norm 0 */                     \
        return m * (p == 2 ? sqrt(acc) : p == 1 ? acc : pow(acc, 1 / p));                             \
    }
NORM_OF(norm_of, double, norm_k)
NORM_OF(norm_of_f32, float, norm_k_f32)

/* NAME(v, n, y, dy, p, gx): gx (n values of T) = dy·∂y/∂v for the row v (of T) of the p-norm y,
 * in float64 rounded once to T: dy·sgn(v) split evenly among the extremes for ±inf; 0 where
 * y = 0 and p >= 1 (PyTorch's masked_fill(norm == 0, 0)) and where v = 0; dy·v/y for 2,
 * dy·sgn(v) for 1, sgn(v)·|v|^(p-1)·dy/y^(p-1) otherwise (p ≠ 0). */
#define NORM_GRAD(NAME, T)                                                                            \
    static void NAME(const T *v, int64_t n, double y, double dy, double p, T *gx) {                   \
        if (isinf(p)) {                                                                               \
            int64_t ties = 0;                                                                         \
            _Pragma("omp simd reduction(+ : ties)")                                                   \
            for (int64_t i = 0; i < n; i++) ties += fabs((double)v[i]) == y;                          \
            _Pragma("omp simd")                                                                       \
            for (int64_t i = 0; i < n; i++) {                                                         \
                const double x = v[i];                                                                \
                gx[i] = (T)(fabs(x) == y ? dy * (double)((x > 0) - (x < 0)) / (double)ties : 0);      \
            }                                                                                         \
        } else if (y == 0 && p >= 1) {                                                                \
            memset(gx, 0, sizeof(T) * (size_t)n);                                                     \
        } else if (p == 2) {                                                                          \
            _Pragma("omp simd")                                                                       \
            for (int64_t i = 0; i < n; i++) gx[i] = (T)(v[i] == 0 ? 0 : dy * (double)v[i] / y);       \
        } else if (p == 1) {                                                                          \
            _Pragma("omp simd")                                                                       \
            for (int64_t i = 0; i < n; i++) gx[i] = (T)(v[i] == 0 ? 0 : (double)((v[i] > 0) - (v[i] < 0)) * dy); \
        } else {                                                                                      \
            const double scale = dy / pow(y, p - 1), q = p - 1;                                       \
            if (q == -0.5) NORM_GRAD_LOOP(T, 1 / sqrt(a));                                            \
            else if (q == 0.5) NORM_GRAD_LOOP(T, sqrt(a));                                            \
            else if (q == 1.5) NORM_GRAD_LOOP(T, a * sqrt(a));                                        \
            else if (q == 2) NORM_GRAD_LOOP(T, a * a);                                                \
            else if (q == 3) NORM_GRAD_LOOP(T, a * a * a);                                            \
            else if (q == 4) NORM_GRAD_LOOP(T, (a * a) * (a * a));                                    \
            else                                                                                      \
                for (int64_t i = 0; i < n; i++) {                                                     \
                    const double x = v[i], sg = (double)((x > 0) - (x < 0));                          \
                    gx[i] = (T)(x == 0 ? 0 : sg * pow_norm(fabs(x), q) * scale);                      \
                }                                                                                     \
        }                                                                                             \
    }
/* gx[i] = sgn(v)·|v|^q·scale (0 where v = 0) over the row, |v|^q the expression POW of a = |v|:
 * pow_norm's operations for its q, in vectors (the 0.5-norm's gradient along dim -1 of [512, 512]
 * float32, one thread: see docs/benchmarks.md, "Session 20", vnorm20). */
#define NORM_GRAD_LOOP(T, POW)                                                                        \
    do {                                                                                              \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                         \
            const double x = v[i], a = fabs(x), sg = (double)((x > 0) - (x < 0));                     \
            gx[i] = (T)(x == 0 ? 0 : sg * (POW) * scale);                                             \
        }                                                                                             \
    } while (0)
AG_VEC_CLONES_512 NORM_GRAD(norm_grad, double)
AG_VEC_CLONES_512 NORM_GRAD(norm_grad_f32, float)

/* Whether the norm over the dims marked in reduced reads rows of x as they lie: x contiguous
 * float32 and the reduced dims after every kept one (the rows of norm_of_f32 and norm_grad_f32). */
static bool norm_rows_f32(const ag_tensor *x, const bool *reduced) {
    if (x->dtype != AG_F32 || !ag__contig(x) || ag__backend == AG_BACKEND_REFERENCE) return false;
    for (int d = 1; d < x->ndim; d++)
        if (reduced[d - 1] && !reduced[d]) return false;
    return true;
}

/* p[0] (float64, stride 0 along the reduced dims) += Σ x² (ctx: true) or Σ |x| (false) of float32
 * p[1]: the float32 1- and 2-norms, which need no scaling (a float32 squared is within float64's
 * range), summed in float64 with AG_SUM8 straight from x, however x is laid out. */
static void norm12_f32(char **p, const int64_t *s, int64_t n, void *ctx) {
    const bool two = *(const bool *)ctx;
    if (s[0] != 0) { /* one term into each of n outputs */
        for (int64_t i = 0; i < n; i++) {
            const double v = *(const float *)(p[1] + i * s[1]);
            *(double *)(p[0] + i * s[0]) += two ? v * v : fabs(v);
        }
        return;
    }
    const float *x = (const float *)p[1];
    double acc;
    if (s[1] == (int64_t)sizeof(float) && two) AG_SUM8(acc, n, i, (double)x[i] * (double)x[i]);
    else if (s[1] == (int64_t)sizeof(float)) AG_SUM8(acc, n, i, fabs((double)x[i]));
    else if (two) AG_SUM8(acc, n, i, (double)*(const float *)(p[1] + i * s[1]) * (double)*(const float *)(p[1] + i * s[1]));
    else AG_SUM8(acc, n, i, fabs((double)*(const float *)(p[1] + i * s[1])));
    *(double *)p[0] += acc;
}

/* y (float32, `outer` elements) = the 1- or 2-norm of x (float32) over the dims marked in reduced,
 * through the sums of core/sum.c (Σ x² or Σ |x|; along leading and middle dims of a contiguous x
 * in float32 trees, x [1048576, 3] over dim 0 on one thread 5 240 -> 184 us) or, for
 * other layouts, norm12_f32: one pass over x with no float64 copy.  false when out of memory. */
static bool norm12_into(ag_tensor *y, ag_tensor *x, const bool *reduced, bool two, int64_t outer) {
    int64_t kshape[AG_MAX_DIMS];
    uint64_t mask = 0;
    for (int d = 0; d < x->ndim; d++) {
        kshape[d] = reduced[d] ? 1 : x->shape[d];
        if (reduced[d]) mask |= (uint64_t)1 << d;
    }
    ag_tensor *acc = ag__new_unowned(AG_F64, x->ndim, kshape, true);
    if (!acc) return false;
    if (!ag__sum_term_into(acc, x, two ? AG_SUM_SQ : AG_SUM_ABS)) { /* not contiguous: the iterator */
        ag_iter it;
        ag__iter_init(&it, x->ndim, x->shape);
        ag__iter_add_reduced(&it, acc, mask);
        ag__iter_add(&it, x);
        ag__iter_run_sum(&it, norm12_f32, &two);
    }
    const double *a = dp(acc);
    for (int64_t o = 0; o < outer; o++) ((float *)ag__ptr(y))[o] = (float)(two ? sqrt(a[o]) : a[o]);
    ag_release(acc);
    return true;
}

static ag_status vector_norm_backward(ag_tensor *out, ag_tensor *gout);
static ag_status vector_norm_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *vector_norm_jvp(ag_tensor *out, ag_tensor *const *tin);
/* tangent dy = Σ ∂y/∂x·dx over the reduced dims, ∂y/∂x as the adjoint's */
/* y = (Σ|x|^p)^(1/p) over dims;  dx = dy·sgn(x)·|x|^(p-1) / y^(p-1) (0 where y = 0; p < 1: 0 where x = 0),
 * dy·sgn(x) for p = 1, dy·x/y for p = 2, split among the extremes for ±inf, 0 for p = 0 */
static const ag_op op_vector_norm = {.name = "linalg_vector_norm", .grad_fn = "LinalgVectorNormBackward0",
                                     .backward = vector_norm_backward, .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                                     .math = "y = (Σ|x|^p)^(1/p) over dims (max/min |x| for ±inf, count of x ≠ 0 for "
                                             "0);  dx = dy·sgn(x)·|x|^(p-1) / y^(p-1), 0 where y = 0; ±inf: "
                                             "dy·sgn(x) split evenly among the |x| = y; 0: none",
                                     .backward_graph = vector_norm_backward_graph, .jvp = vector_norm_jvp,
                                     .tangent = "ẏ = Σ_dims ẋ·sgn(x)·|x|^(p-1) / y^(p-1), 0 where y = 0; ±inf: "
                                                "the mean ẋ·sgn(x) over the |x| = y; 0: ẏ = 0"};

/* y (of shape [nd] shape) = the ord-norms of x over the dims marked reduced (inner elements each), not recorded */
static ag_tensor *norm_forward(ag_tensor *x, double ord, const bool *reduced, int nd, const int64_t *shape, int64_t inner) {
    const int64_t outer = ag__numel(nd, shape);
    ag_tensor *y = ag__new(x->dtype, nd, shape);
    if (!y) return NULL;
    if (x->dtype == AG_F32 && (ord == 1 || ord == 2) && outer > 0 && ag__backend != AG_BACKEND_REFERENCE) {
        /* the common norms of float32 in one vectorised pass (2-norm along dim 1 of [4096, 4096],
         * one thread: 138 ms through the float64 copy and norm_of, 3.0 ms here; PyTorch 3.3) */
        if (!norm12_into(y, x, reduced, ord == 2, outer)) {
            ag__discard(y);
            return NULL;
        }
    } else if (norm_rows_f32(x, reduced)) {
        const float *v = (const float *)ag__ptr(x);
        for (int64_t o = 0; o < outer; o++) ((float *)ag__ptr(y))[o] = (float)norm_of_f32(v + o * inner, inner, ord);
    } else {
        ag_tensor *w = outer > 0 ? reordered_f64(x, reduced, &inner) : NULL;
        if (outer > 0 && !w) {
            ag__discard(y);
            return NULL;
        }
        for (int64_t o = 0; o < outer; o++) put(x->dtype, ag__ptr(y), o, norm_of(dp(w) + o * inner, inner, ord));
        ag_release(w);
    }
    return y;
}

/* the ord-norm (ctx) of x's memory-order view (ag__reduce_in_memory_order's fn) */
static ag_tensor *norm_of_view(ag_tensor *xv, int ndims, const int *dims, void *ctx) {
    return ag_linalg_vector_norm(xv, *(const double *)ctx, ndims, dims, true);
}

ag_tensor *ag_linalg_vector_norm(ag_tensor *x, double ord, int ndims, const int *dims, bool keepdim) {
    AG_CHECK_HANDLES(NULL, "linalg_vector_norm", x);
    if (!x) return NULL;
    const char *op = "linalg_vector_norm";
    if (ag__check_float(op, x, NULL)) return NULL;
    if (isnan(ord)) return ag__fail_null(AG_ERR_ARG, "linalg_vector_norm: ord must not be NaN");
    if (ndims < 0 || ndims > AG_MAX_DIMS || (ndims > 0 && !dims))
        return ag__fail_null(AG_ERR_ARG, "linalg_vector_norm: %d dims (at most %d; 0 for all)", ndims, AG_MAX_DIMS);
    bool reduced[AG_MAX_DIMS] = {false};
    for (int i = 0; i < ndims; i++) {
        int d = ag__dim(op, dims[i], x->ndim);
        if (d < 0) return NULL;
        if (reduced[d] && x->ndim > 0) return ag__fail_null(AG_ERR_ARG, "linalg_vector_norm: dim %d appears twice", dims[i]);
        reduced[d] = true;
    }
    int64_t shape[AG_MAX_DIMS], inner = 1;
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (ndims == 0) reduced[d] = true;
        if (!reduced[d]) shape[nd++] = x->shape[d];
        else if (keepdim) shape[nd++] = 1;
        if (reduced[d]) inner *= x->shape[d];
    }
    if (inner == 0 && (ord < 0 || isinf(ord)))
        return ag__fail_null(AG_ERR_SHAPE, "linalg_vector_norm: the %g-norm of an empty reduction is not defined", ord);
    uint64_t mask = 0;
    for (int d = 0; d < x->ndim; d++) mask |= (uint64_t)reduced[d] << d;
    bool tried; /* a permuted x (transposed, permuted): the norms of its memory order's runs */
    ag_tensor *y = ag__reduce_in_memory_order(x, mask, keepdim, norm_of_view, &ord, &tried);
    if (!y && !tried) y = norm_forward(x, ord, reduced, nd, shape, inner);
    if (!y) return NULL;
    if (!ag__needs_grad1(x)) return y;
    if (!ag__record(y, &op_vector_norm, &x, 1)) return NULL;
    y->attr.a = ord;
    for (int d = 0; d < x->ndim; d++) y->attr.i[d] = reduced[d];
    return y;
}

static ag_status vector_norm_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    double p = out->attr.a;
    bool reduced[AG_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) reduced[d] = out->attr.i[d] != 0;
    int perm[AG_MAX_DIMS];
    int64_t pshape[AG_MAX_DIMS], pstride[AG_MAX_DIMS], inner, outer = ag_numel(out);
    kept_then_reduced(x, reduced, perm, pshape, pstride, &inner);
    ag_tensor *yv = f64(out, out->ndim, out->shape), *g = f64(gout, out->ndim, out->shape);
    if (p != 0 && norm_rows_f32(x, reduced)) { /* rows of x as they lie, into x's layout */
        ag_tensor *gx = yv && g ? ag__new_unowned(AG_F32, x->ndim, x->shape, false) : NULL;
        for (int64_t o = 0; gx && o < outer; o++)
            norm_grad_f32((const float *)ag__ptr(x) + o * inner, inner, dp(yv)[o], dp(g)[o], p,
                          (float *)ag__ptr(gx) + o * inner);
        ag_status st = gx ? ag__accumulate(x, gx) : AG_ERR_NOMEM;
        return done(st, yv, g, NULL, NULL);
    }
    ag_tensor *w = outer > 0 && inner > 0 ? reordered_f64(x, reduced, &inner) : NULL;
    ag_tensor *gp = ag__new_unowned(AG_F64, x->ndim, pshape, true); /* reordered as w */
    ag_status st = (w || outer == 0 || inner == 0) && yv && g && gp ? AG_OK : AG_ERR_NOMEM;
    for (int64_t o = 0; !st && inner > 0 && o < outer && p != 0; o++)
        norm_grad(dp(w) + o * inner, inner, dp(yv)[o], dp(g)[o], p, dp(gp) + o * inner);
    ag_release(w);
    ag_tensor *gx = st ? NULL : ag__new_unowned(AG_F64, x->ndim, x->shape, false);
    if (!st && gx) { /* back to x's order: gx[perm[i]] viewed through gp's strides */
        int64_t cs[AG_MAX_DIMS], vs[AG_MAX_DIMS];
        ag__contiguous_strides(x->ndim, pshape, cs);
        for (int i = 0; i < x->ndim; i++) vs[perm[i]] = cs[i];
        ag_tensor *view = ag__new_view_unowned(gp, x->ndim, x->shape, vs, 0);
        if (view) ag__copy_into(gx, view);
        else st = AG_ERR_NOMEM;
        ag_release(view);
    } else if (!st)
        st = AG_ERR_NOMEM;
    if (!st) st = give(x, gx), gx = NULL;
    return done(st, yv, g, gp, gx);
}

/* The reduced dims of x (a bit mask) of the norm out. */
static uint64_t norm_mask(const ag_tensor *out) {
    uint64_t mask = 0;
    for (int d = 0; d < out->in[0]->ndim; d++) mask |= (uint64_t)(out->attr.i[d] != 0) << d;
    return mask;
}

/* ∂y/∂x of the p-norm y = out, of x's shape: sgn(x)·|x|^(p-1) / y^(p-1), 0 where y = 0
 * or x = 0 (|x| and y made 1 there first, so that no derivative of it is inf or NaN);
 * x/y for 2, sgn(x) for 1; sgn(x)·[|x| = y] / #{|x| = y} for ±inf; 0 for 0. */
static ag_tensor *norm_partial(ag_tensor *out) {
    ag_tensor *x = out->in[0];
    double p = out->attr.a;
    uint64_t mask = norm_mask(out);
    ag_tensor *y = ag__jvp_keepdim(out, x, mask);
    if (p == 0) return ag_zeros_like(x);
    if (p == 1) return ag_sign(x);
    if (isinf(p)) {
        int dims[AG_MAX_DIMS], nd = ag__jvp_mask_dims(mask, x->ndim, dims);
        ag_tensor *hit = y ? ag_to_dtype(ag_eq(ag_abs(x), y), x->dtype) : NULL;
        return ag_div(ag_mul(ag_sign(x), hit), ag__jvp_sum_dims(hit, nd, dims));
    }
    ag_tensor *ynz = nonzero_mask(y), *ysafe = ag_add(y, ag_rsub_scalar(1, ynz));
    if (p == 2) return ag_div(x, ysafe);
    ag_tensor *axsafe = ag_add(ag_abs(x), ag_rsub_scalar(1, nonzero_mask(x)));
    ag_tensor *r = ag_div(ag_pow_scalar(axsafe, p - 1), ag_pow_scalar(ysafe, p - 1));
    return ag_mul(ag_mul(ag_sign(x), r), ynz);
}

/* dx = dy·∂y/∂x (norm_partial) */
static ag_status vector_norm_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    return gave(&gin[0], ag_mul(ag__jvp_keepdim(gout, out->in[0], norm_mask(out)), norm_partial(out)));
}

/* dy = Σ ∂y/∂x·dx over the reduced dims */
static ag_tensor *vector_norm_jvp(ag_tensor *out, ag_tensor *const *tin) {
    int dims[AG_MAX_DIMS], nd = ag__jvp_mask_dims(norm_mask(out), out->in[0]->ndim, dims);
    return ag__jvp_shaped(ag__jvp_sum_dims(ag_mul(norm_partial(out), tin[0]), nd, dims), out);
}

/* ord as a string: "fro", "nuc", "1", "-1", "2", "-2", "inf", "-inf". */
ag_tensor *ag_linalg_matrix_norm(ag_tensor *a, const char *ord, bool keepdim) {
    AG_CHECK_HANDLES(NULL, "linalg_matrix_norm", a);
    if (!a) return NULL;
    const char *op = "linalg_matrix_norm";
    if (!ord) ord = "fro";
    static const char *const ords[] = {"fro", "nuc", "1", "-1", "2", "-2", "inf", "-inf"};
    int k = 0;
    while (k < 8 && strcmp(ord, ords[k]) != 0) k++;
    if (k == 8)
        return ag__fail_null(AG_ERR_ARG, "linalg_matrix_norm: ord \"%s\" is not one of fro, nuc, 1, -1, 2, -2, inf, -inf", ord);
    if (check_matrix(op, a, false)) return NULL;
    if (ag__composite_begin(op)) return NULL;
    ag_tensor *y = NULL;
    if (k == 0) y = ag_linalg_vector_norm(a, 2, 2, (const int[]){-2, -1}, false);
    else if (k == 1 || k == 4 || k == 5) { /* through the singular values */
        ag_tensor *s = ag_linalg_svdvals(a);
        y = !s ? NULL : k == 1 ? ag_sum_dim(s, -1, false) : k == 4 ? ag_max_dim(s, -1, false) : ag_min_dim(s, -1, false);
    } else { /* 1: the largest column sum of |a|, inf: the largest row sum */
        int along = k == 2 || k == 3 ? -2 : -1;
        ag_tensor *sums = ag_linalg_vector_norm(a, 1, 1, &along, false);
        y = !sums ? NULL : (k == 2 || k == 6) ? ag_max_dim(sums, -1, false) : ag_min_dim(sums, -1, false);
    }
    if (y && keepdim) y = ag_unsqueeze(ag_unsqueeze(y, -1), -1);
    return ag__composite_end(y);
}

const ag_op *const ag__linalg_ops[] = {&op_solve, &op_solve_triangular, &op_inv,  &op_det, &op_slogdet, &op_cholesky, &op_cholesky_solve,
                                       &op_eigh,  &op_eigvalsh, &op_qr, &op_svd,   &op_pinv,     &op_vector_norm, NULL};

/*
 * Sizes that do not fit: shapes whose element or byte count overflows, views whose
 * bounds arithmetic would overflow, counts from data, thread counts.  Each case
 * once wrote past a buffer, returned a tensor claiming elements it did not have,
 * or ended the process; each must now fail cleanly with its status and a message
 * naming the function and the shape.  The helper allocation sizes that are
 * representable but cannot be had (2^62 bytes) must give AG_ERR_NOMEM.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/parallel.h"
#include "data/internal.h"
#include "tap.h"

/* Under AddressSanitizer a request for 2^62 bytes must come back NULL, as malloc's does. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

#define BIG ((int64_t)1 << 62)

/* t is NULL and the last error has status st and a message holding each needle. */
static bool refused(const ag_tensor *t, ag_status st, const char *needle1, const char *needle2) {
    bool good = !t && ag_last_status() == st && strstr(ag_last_error(), needle1) &&
                (!needle2 || strstr(ag_last_error(), needle2));
    if (!good) diag("got %s, status %d: %s", t ? "a tensor" : "NULL", (int)ag_last_status(), ag_last_error());
    ag_clear_error();
    return good;
}

/* ---- creation ------------------------------------------------------------------------------ */
static void test_creation(void) {
    ag_scope_begin();
    ok(refused(ag_ones(AG_SHAPE(BIG), AG_F32), AG_ERR_SHAPE, "ones: shape [4611686018427387904] of float32 would take more than 2^62 bytes",
               NULL),
       "ones [2^62] float32: 2^64 bytes, refused (once 0 bytes allocated, then 2^62 written)");
    ok(refused(ag_zeros(AG_SHAPE(BIG), AG_F32), AG_ERR_SHAPE, "zeros:", "[4611686018427387904]"),
       "zeros [2^62] float32 is refused (once a tensor claiming 2^62 elements)");
    float one = 1;
    ok(refused(ag_from_data(&one, AG_SHAPE(BIG), AG_F32), AG_ERR_SHAPE, "from_data:", "[4611686018427387904]"),
       "from_data [2^62] is refused before reading the data");
    ok(refused(ag_from_buffer(&one, AG_SHAPE(BIG, 4), AG_F32), AG_ERR_SHAPE, "from_buffer:", "[4611686018427387904, 4]"),
       "from_buffer of a shape beyond 2^62 elements is refused");
    ok(refused(ag_empty(AG_SHAPE(274177, 67280421310721), AG_F32), AG_ERR_SHAPE,
               "empty: shape [274177, 67280421310721] is too large: its sizes multiply beyond 2^62", NULL),
       "empty of a shape whose product wraps to 2^64 + 1 is refused");
    ok(refused(ag_empty(AG_SHAPE(0, BIG, BIG), AG_F32), AG_ERR_SHAPE, "empty:", "[0, 4611686018427387904, 4611686018427387904]"),
       "an empty shape whose other sizes multiply beyond int64 (its strides would) is refused");
    ag_tensor *e = ag_empty(AG_SHAPE(BIG, 0), AG_U8);
    ok(e && ag_numel(e) == 0 && ag_stride(e, 0) == 1, "[2^62, 0] uint8 holds nothing and is fine");
    ok(refused(ag_ones(AG_SHAPE(BIG), AG_U8), AG_ERR_NOMEM, "out of memory allocating", "bytes"),
       "ones [2^62] uint8 is a representable size: out of memory, naming the bytes");

    ok(refused(ag_eye(1LL << 31, AG_F32), AG_ERR_SHAPE, "eye: shape [2147483648, 2147483648] of float32", NULL),
       "eye(2^31) float32 is refused (once written past a tiny buffer)");
    ok(refused(ag_linspace(0, 1, BIG, AG_F32), AG_ERR_SHAPE, "linspace:", "[4611686018427387904]"),
       "linspace of 2^62 steps is refused");
    ok(refused(ag_arange(0, 0x1p62, 1, AG_F32), AG_ERR_SHAPE, "arange:", "[4611686018427387904]"),
       "arange(0, 2^62, 1) is refused");
    ok(refused(ag_arange(0, 1e19, 1, AG_F32), AG_ERR_SHAPE, "arange: 1e+19 elements", "too many"),
       "arange(0, 1e19, 1): the count is checked as a double before converting it (once undefined)");
    ok(refused(ag_arange(-1e308, 1e308, 1e-300, AG_F64), AG_ERR_SHAPE, "arange: inf elements", NULL),
       "arange whose end - start overflows to inf is refused");
    ok(refused(ag_arange(NAN, 1, 1, AG_F32), AG_ERR_VALUE, "arange: need finite", NULL), "arange(NaN, ...): value error");
    ok(refused(ag_arange(0, INFINITY, 1, AG_F32), AG_ERR_VALUE, "arange: need finite", NULL), "arange(0, inf, ...): value error");
    ok(refused(ag_arange(0, 1, 0, AG_F32), AG_ERR_VALUE, "arange: need finite", NULL), "arange with step 0: value error");
    ok(refused(ag_arange(0, 1, NAN, AG_F32), AG_ERR_VALUE, "arange: need finite", NULL), "arange with step NaN: value error");
    ag_tensor *r = ag_arange(0, 5, 2, AG_I64);
    ok(r && ag_numel(r) == 3 && ag_get(r, (int64_t[]){2}) == 4, "arange(0, 5, 2) still gives 0 2 4");
    ag_scope_end();
}

/* ---- layers ------------------------------------------------------------------------------------ */
static void test_layers(void) {
    ag_module *m = ag_nn_linear(1LL << 31, 1LL << 31, true);
    ok(!m && ag_last_status() == AG_ERR_SHAPE && strstr(ag_last_error(), "[2147483648, 2147483648]"),
       "nn.Linear(2^31, 2^31) is refused (its weight once 2^64 bytes in a tiny buffer): %s", ag_last_error());
    ag_module_free(m);
    ag_clear_error();
    m = ag_nn_batch_norm1d(BIG, 1e-5, 0.1, true, true);
    ok(!m && ag_last_status() == AG_ERR_SHAPE && strstr(ag_last_error(), "[4611686018427387904]"),
       "nn.BatchNorm1d(2^62) is refused: %s", ag_last_error());
    ag_module_free(m);
    ag_clear_error();
    ok(ag_live_tensors() == 0, "the refused layers leave no tensor behind");
}

/* ---- views ------------------------------------------------------------------------------------------- */
static void test_views(void) {
    ag_scope_begin();
    ag_tensor *one = ag_ones(AG_SHAPE(1), AG_F32), *x4 = ag_arange(0, 4, 1, AG_F32), *x5 = ag_arange(0, 5, 1, AG_F32);
    ok(refused(ag_reshape(one, AG_SHAPE(274177, 67280421310721)), AG_ERR_SHAPE, "reshape: shape [274177, 67280421310721] "
               "is invalid for input of size 1", NULL),
       "reshape of 1 element to a shape whose product wraps to 1 is refused");
    ok(refused(ag_view(one, AG_SHAPE(-1, 274177, 67280421310721)), AG_ERR_SHAPE, "view:", "invalid for input of size 1"),
       "view inferring a size beside sizes whose product wraps is refused");
    ag_tensor *none = ag_zeros(AG_SHAPE(0), AG_F32);
    ok(refused(ag_reshape(none, AG_SHAPE(0, BIG, BIG)), AG_ERR_SHAPE, "reshape:", "invalid for input of size 0"),
       "reshape of nothing to [0, 2^62, 2^62] (strides beyond int64) is refused");
    ag_tensor *u = ag_ones(AG_SHAPE(1, 1), AG_F32);
    ok(refused(ag_expand(u, AG_SHAPE(BIG, BIG)), AG_ERR_SHAPE, "expand: shape [4611686018427387904, 4611686018427387904] "
               "is too large", NULL),
       "expand [1, 1] -> [2^62, 2^62] is refused");
    ag_tensor *wide = ag_expand(one, AG_SHAPE(BIG));
    ok(wide && ag_numel(wide) == BIG && ag_stride(wide, 0) == 0, "expand [1] -> [2^62] is a valid view of one element");
    ok(refused(ag_contiguous(wide), AG_ERR_SHAPE, "clone: shape [4611686018427387904] of float32 would take", NULL),
       "but a contiguous copy of it (2^64 bytes) is refused (once overflowed)");
    ok(refused(ag_to_dtype(ag_expand(ag_ones(AG_SHAPE(1), AG_U8), AG_SHAPE(BIG)), AG_F64), AG_ERR_SHAPE,
               "to_dtype: shape [4611686018427387904] of float64", NULL),
       "to_dtype of a 2^62-element uint8 view to float64 is refused");
    ag_tensor *half = ag_expand(one, AG_SHAPE(BIG / 2));
    ok(refused(ag_add(half, half), AG_ERR_SHAPE, "shape [2305843009213693952] of float32 would take more than 2^62 bytes",
               NULL),
       "an op result too large to hold (2^63 bytes) is refused where it is allocated");
    ag_tensor *col = ag_expand(u, AG_SHAPE(BIG, 1)), *row = ag_expand(u, AG_SHAPE(1, BIG));
    ok(refused(ag_mul(col, row), AG_ERR_SHAPE, "mul: shape [4611686018427387904, 4611686018427387904] is too large", NULL),
       "broadcasting [2^62, 1] with [1, 2^62] is refused, naming the op");
    ok(refused(ag_where(ag_expand(ag_ones(AG_SHAPE(1, 1), AG_BOOL), AG_SHAPE(BIG, 1)), row, row), AG_ERR_SHAPE, "where:", NULL),
       "where broadcasting beyond 2^62 elements is refused");
    ok(refused(ag_lt(col, row), AG_ERR_SHAPE, "lt:", NULL), "a comparison broadcasting beyond 2^62 elements is refused");

    ok(refused(ag_narrow(x4, 0, 1, INT64_MAX), AG_ERR_INDEX,
               "narrow: start 1 + length 9223372036854775807 exceeds dim 0 of size 4 (shape [4])", NULL),
       "narrow(x[4], 0, 1, INT64_MAX) is refused (once a view of 2^63 - 1 elements over 4)");
    ok(refused(ag_narrow(x4, 0, 5, 0), AG_ERR_INDEX, "narrow: start 5", NULL), "narrow starting past the end is refused");
    ok(refused(ag_narrow(x4, 0, INT64_MIN, 1), AG_ERR_INDEX, "narrow:", NULL), "narrow from INT64_MIN is refused");
    ag_tensor *n = ag_narrow(x4, 0, -1, 1);
    ok(n && ag_numel(n) == 1 && ag_item(n) == 3, "narrow(x, 0, -1, 1) is still the last element");
    ag_tensor *s = ag_slice(x5, 0, 0, 5, INT64_MAX - 3);
    ok(s && ag_size(s, 0) == 1 && ag_item(s) == 0, "slice(x[5], 0, 0, 5, INT64_MAX - 3) is x[0] (once size -1)");
    s = ag_slice(x5, 0, 1, INT64_MAX, INT64_MAX);
    ok(s && ag_size(s, 0) == 1 && ag_item(s) == 1, "slice with end and step INT64_MAX is x[1]");
    s = ag_slice(x5, 0, INT64_MIN, INT64_MAX, 2);
    ok(s && ag_size(s, 0) == 3 && ag_get(s, (int64_t[]){2}) == 4, "slice from INT64_MIN to INT64_MAX clips to the whole dim");
    ag_tensor *m = ag_reshape(ag_arange(0, 6, 1, AG_F32), AG_SHAPE(2, 3));
    s = ag_slice(m, 0, 0, 2, INT64_MAX);
    ok(s && ag_size(s, 0) == 1 && ag_stride(s, 0) == 3 && ag_get(s, (int64_t[]){0, 2}) == 2,
       "a step INT64_MAX over a dim of stride 3 keeps one row and its stride (stride * step would overflow)");
    ok(refused(ag_slice(x5, 0, 0, 5, -1), AG_ERR_ARG, "slice: step must be positive", NULL), "negative steps stay refused");

    ag_tensor *pieces[3];
    ok(ag_split(x5, INT64_MAX, 0, pieces, 3) == 1 && ag_numel(pieces[0]) == 5,
       "split with split_size INT64_MAX is one piece (once (n + size - 1) overflowed)");
    ag_tensor *longest = ag_expand(one, AG_SHAPE(BIG));
    ok(ag_chunk(longest, 3, 0, pieces, 3) == 3 && ag_size(pieces[0], 0) == BIG / 3 + 1 &&
           ag_size(pieces[2], 0) == BIG - 2 * (BIG / 3 + 1),
       "chunk of a 2^62-element view into 3 pieces");
    ag_scope_end();
}

/* ---- joining, indexing, products ----------------------------------------------------------------------- */
static void test_ops(void) {
    ag_scope_begin();
    ag_tensor *one = ag_ones(AG_SHAPE(1), AG_F32), *u = ag_ones(AG_SHAPE(1, 1), AG_F32);
    ag_tensor *big = ag_expand(one, AG_SHAPE(BIG)), *half = ag_expand(one, AG_SHAPE(BIG / 2));
    ok(refused(ag_cat((ag_tensor *[]){big, big}, 2, 0), AG_ERR_SHAPE, "cat: the sizes along dim 0 add up beyond 2^62", NULL),
       "cat of two 2^62-element views is refused (once their sum overflowed int64)");
    ok(refused(ag_cat((ag_tensor *[]){half, half, half}, 3, 0), AG_ERR_SHAPE, "cat:", "beyond 2^62"),
       "cat of three 2^61-element views is refused");
    ag_tensor *quarter = ag_expand(one, AG_SHAPE(BIG / 4));
    ok(refused(ag_cat((ag_tensor *[]){quarter, quarter}, 2, 0), AG_ERR_SHAPE, "cat: shape [2305843009213693952] of float32",
               NULL),
       "cat whose result would take 2^63 bytes is refused");
    ok(refused(ag_stack((ag_tensor *[]){big, big}, 2, 0), AG_ERR_SHAPE, "stack:", "[2, 4611686018427387904]"),
       "stack of two 2^62-element views is refused");
    ag_tensor *idx = ag_zeros(AG_SHAPE(4), AG_I64);
    ok(refused(ag_index_select(ag_expand(u, AG_SHAPE(1, BIG)), 0, idx), AG_ERR_SHAPE, "index_select:", "[4, 4611686018427387904]"),
       "index_select growing a 2^62-wide view is refused");

    ag_tensor *a = ag_expand(ag_ones(AG_SHAPE(1, 1, 1, 1), AG_F32), AG_SHAPE(1LL << 32, 1, 1, 1));
    ag_tensor *b = ag_expand(ag_ones(AG_SHAPE(1, 1, 1), AG_F32), AG_SHAPE(1LL << 32, 1, 1));
    ok(refused(ag_matmul(a, b), AG_ERR_SHAPE, "matmul:", "[4294967296, 4294967296, 1, 1]"),
       "matmul whose batch dims broadcast to 2^64 is refused");
    ok(refused(ag_linear(ag_expand(u, AG_SHAPE(BIG, 1)), ag_ones(AG_SHAPE(2, 1), AG_F32), NULL), AG_ERR_SHAPE, "linear:",
               "[4611686018427387904, 2]"),
       "linear of a 2^62-row view to 2 features is refused");
    ag_tensor *target = ag_zeros(AG_SHAPE(1), AG_I64);
    ok(refused(ag_cross_entropy(ag_expand(u, AG_SHAPE(1, BIG)), target, NULL), AG_ERR_SHAPE, "cross_entropy:", NULL),
       "cross_entropy over 2^62 classes of a view is refused (its class weights once overflowed)");

    ag_tensor *cls = ag_from_data((int64_t[]){BIG}, AG_SHAPE(1), AG_I64);
    ok(refused(ag_one_hot(cls, -1), AG_ERR_SHAPE, "one_hot: shape [1, 4611686018427387905] is too large", NULL),
       "one_hot of class 2^62 is refused");
    ag_tensor *cls2 = ag_from_data((int64_t[]){BIG, 1}, AG_SHAPE(2), AG_I64);
    ok(refused(ag_one_hot(cls2, -1), AG_ERR_SHAPE, "one_hot: shape [2, 4611686018427387905] is too large", NULL),
       "one_hot of 2 values with classes 2^62 + 1 is refused (once written at wrapped offsets)");
    ag_tensor *top = ag_from_data((int64_t[]){INT64_MAX}, AG_SHAPE(1), AG_I64);
    ok(refused(ag_one_hot(top, -1), AG_ERR_SHAPE, "one_hot:", NULL), "one_hot inferring INT64_MAX + 1 classes is refused");
    ag_tensor *oh = ag_one_hot(ag_from_data((int64_t[]){2, 0}, AG_SHAPE(2), AG_I64), -1);
    ok(oh && ag_size(oh, 1) == 3 && ag_get(oh, (int64_t[]){0, 2}) == 1, "one_hot of small classes still works");
    ag_scope_end();
}

/* ---- data and metrics -------------------------------------------------------------------------------------- */
static void test_data(void) {
    ag_scope_begin();
    const char *text = "0.25,4611686018427387904\n0.5,1\n";
    ag_csv_options o = {.has_labels = true, .label_column = -1};
    ag_csv *csv = ag__csv_decode((const unsigned char *)text, strlen(text), "labels.csv", &o);
    ok(csv && ag_csv_num_classes(csv) == BIG + 1, "a CSV label of 2^62 counts 2^62 + 1 classes");
    if (csv)
        ok(refused(ag_one_hot(ag_csv_labels(csv), ag_csv_num_classes(csv)), AG_ERR_SHAPE, "one_hot:", "too large"),
           "one_hot of those labels is refused (once written at wrapped indices)");
    ag_csv_free(csv);

    ag_tensor *p = ag_from_data((int64_t[]){0, 1}, AG_SHAPE(2), AG_I64);
    ok(refused(ag_confusion_matrix(p, p, 1LL << 32), AG_ERR_SHAPE, "confusion_matrix: shape [4294967296, 4294967296]", NULL),
       "confusion_matrix with 2^32 classes is refused (once a crash)");
    ag_tensor *far = ag_from_data((int64_t[]){INT64_MAX}, AG_SHAPE(1), AG_I64);
    ok(refused(ag_confusion_matrix(far, far, -1), AG_ERR_INDEX, "confusion_matrix: predicted class", NULL),
       "confusion_matrix inferring classes from id INT64_MAX fails, no overflow");
    ag_history *h = ag_history_new(1, (const char *[]){"loss"});
    ag_state_dict *sd = ag_state_dict_new();
    ag_state_dict_set(sd, "history.loss", ag_expand(ag_zeros(AG_SHAPE(1), AG_F64), AG_SHAPE(BIG)));
    ok(ag_history_load_state_dict(h, sd) == AG_ERR_NOMEM && ag_history_len(h) == 0,
       "a history column of 2^62 rows (a view) is out of memory (its table once 2^65 bytes wrapped)");
    ag_clear_error();
    ag_state_dict_free(sd);
    ag_history_free(h);
    ag_tensor *many = ag_expand(ag_zeros(AG_SHAPE(1), AG_I64), AG_SHAPE(BIG));
    ok(isnan(ag_accuracy(many, many)) && ag_last_status() == AG_ERR_NOMEM,
       "accuracy over a 2^62-sample view: out of memory (its buffer once 2^66 bytes wrapped)");
    ag_clear_error();

    /* [2^62, 0] uint8 holds no bytes, so a dataset may have 2^62 samples */
    ag_tensor *x = ag_zeros(AG_SHAPE(BIG, 0), AG_U8);
    ag_dataset *ds = ag_tensor_dataset(x, x);
    ok(ds && ag_dataset_len(ds) == BIG, "a dataset of 2^62 empty samples");
    ag_loader *l = ag_loader_new(ds, NULL);
    ok(!l && ag_last_status() == AG_ERR_NOMEM, "a loader over it is out of memory (its order once 0 bytes): %s",
       ag_last_error());
    ag_loader_free(l);
    ag_clear_error();
    ag_dataset *parts[2] = {NULL, NULL};
    ok(ag_random_split(ds, (double[]){0.5, 0.5}, 2, 1, parts) == AG_ERR_NOMEM, "random_split of it is out of memory");
    ag_clear_error();
    ag_dataset_free(ds);

    ag_tensor *y = ag_zeros(AG_SHAPE(4, 1), AG_F32);
    ds = ag_tensor_dataset(y, y);
    double huge[1100];
    for (int i = 0; i < 1100; i++) huge[i] = 9.0e15;
    ok(ag_random_split(ds, huge, 1100, 1, (ag_dataset *[1100]){0}) == AG_ERR_ARG,
       "random_split with lengths summing beyond int64 is refused, no overflow");
    ag_clear_error();
    ag_dataset_free(ds);
    ag_scope_end();
}

/* ---- safetensors ------------------------------------------------------------------------------------------- */
static void test_safetensors(void) {
    char path[] = "/tmp/agrad-sizes-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return;
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,1099511627776,1099511627776,1099511627776],\"data_offsets\":[0,0]}}";
    unsigned char n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (unsigned char)((uint64_t)strlen(h) >> (8 * i));
    ok(write(fd, n8, 8) == 8 && write(fd, h, strlen(h)) == (ssize_t)strlen(h), "wrote a safetensors header");
    close(fd);
    ag_state_dict *sd = ag_load_safetensors(path);
    ok(!sd && ag_last_status() == AG_ERR_FORMAT && strstr(ag_last_error(), "impossibly large"),
       "a zero size beside sizes multiplying to 2^120 is refused (its strides once overflowed): %s", ag_last_error());
    ag_state_dict_free(sd);
    ag_clear_error();

    sd = ag_state_dict_new();
    ag_scope_begin();
    ag_state_dict_set(sd, "wide", ag_expand(ag_ones(AG_SHAPE(1), AG_F32), AG_SHAPE(BIG)));
    ok(ag_save_safetensors(sd, path) == AG_ERR_SHAPE && strstr(ag_last_error(), "save_safetensors:") &&
           strstr(ag_last_error(), "\"wide\""),
       "saving a 2^62-element view is refused before writing: %s", ag_last_error());
    ag_scope_end();
    ag_state_dict_free(sd);
    ag_clear_error();
    unlink(path);
}

/* ---- threads ------------------------------------------------------------------------------------------------ */
static void test_threads(void) {
    int before = ag_get_num_threads();
    ag_set_num_threads(1 << 30);
    int n = ag_get_num_threads();
    ok(n >= 1 && n <= AG_MAX_THREADS && n <= AG_THREADS_PER_CORE * (int)sysconf(_SC_NPROCESSORS_ONLN),
       "set_num_threads(2^30) is capped (%d threads)", n);
    ag_scope_begin();
    ag_tensor *a = ag_ones(AG_SHAPE(1 << 18), AG_F32);
    ag_tensor *s = ag_add(a, a);
    ok(s && ag_get(s, (int64_t[]){(1 << 18) - 1}) == 2, "a parallel op then runs (it once ended the process in libgomp)");
    ag_scope_end();
    ag_set_num_threads(before);
    ok(ag_get_num_threads() == before, "the thread count is restored");
}

/* A slice with a huge step keeps one element whose stride is the step: elementwise
 * ops never multiply such a stride by the element size (found by fuzz_api under
 * UBSan: 3468897664857793504 * 8 overflowed in the iterator). */
static void test_huge_stride(void) {
    ag_scope_begin();
    ag_tensor *x = ag_reshape(ag_arange(0, 15, 1, AG_F64), AG_SHAPE(3, 5));
    ag_tensor *s = ag_slice(x, 1, 1, 5, 3468897664857793504LL); /* [3, 1], strides [5, step] */
    ag_tensor *y = s ? ag_rpow_scalar(2, s) : NULL;
    ok(s && ag_numel(s) == 3 && ag_stride(s, 1) == 3468897664857793504LL && y && ag_get(y, (int64_t[]){2, 0}) == 2048,
       "a [3, 1] slice with stride 3468897664857793504 along its size-1 dim: 2^x[2, 1] = %g",
       y ? ag_get(y, (int64_t[]){2, 0}) : NAN);
    ag_scope_end();
}

/* Empty inputs whose other dims multiply to 2^48: batch norm, layer norm and softmax
 * return at once instead of walking 2^48 empty lanes (found by fuzz_api: a timeout). */
static void test_empty_lanes(void) {
    ag_scope_begin();
    ag_tensor *x = ag_empty(AG_SHAPE(1LL << 47, 2, 0), AG_F32), *rm = ag_zeros(AG_SHAPE(2), AG_F32),
              *rv = ag_ones(AG_SHAPE(2), AG_F32);
    ag_tensor *bn = ag_batch_norm(x, rm, rv, NULL, NULL, true, 0.1, 1e-5);
    ag_tensor *bn_eval = ag_batch_norm(x, rm, rv, NULL, NULL, false, 0.1, 1e-5);
    ok(bn && bn_eval && ag_numel(bn) == 0 && ag_numel(bn_eval) == 0, "batch_norm of [2^47, 2, 0] is empty");
    ag_tensor *xc = ag_empty(AG_SHAPE(1LL << 57, 0, 2), AG_F64); /* 2^57 lanes of no channel (found by fuzz_api) */
    ag_tensor *bc = xc ? ag_batch_norm(ag_requires_grad_(xc, true), NULL, NULL, NULL, NULL, true, 0.1, 1e-5) : NULL;
    ag_status bst = bc ? ag_backward(ag_sum(bc)) : AG_ERR_ARG;
    ok(bc && ag_numel(bc) == 0 && bst == AG_OK, "batch_norm of [2^57, 0, 2] and its backward are empty at once (%s)",
       bst == AG_OK ? "ok" : ag_last_error());
    ag_tensor *e = ag_empty(AG_SHAPE(1LL << 48, 0), AG_F32);
    ag_tensor *sm = ag_softmax(e, 1), *ls = ag_log_softmax(e, 0), *ln = ag_layer_norm(e, AG_SHAPE(0), NULL, NULL, 1e-5);
    ok(sm && ls && ln && ag_numel(sm) == 0 && ag_numel(ls) == 0 && ag_numel(ln) == 0,
       "softmax, log_softmax and layer_norm of [2^48, 0] are empty (%s)", sm && ls && ln ? "ok" : ag_last_error());
    ag_tensor *e3 = ag_empty(AG_SHAPE(1LL << 47, 3, 0), AG_F32);
    ag_tensor *mx = ag_max_dim(e3, 1, false), *am = ag_argmax(e3, 1, true), *pr = ag_prod_dim(e3, 1, false);
    ok(mx && am && pr && ag_numel(mx) == 0 && ag_numel(am) == 0 && ag_numel(pr) == 0,
       "max_dim, argmax and prod_dim of [2^47, 3, 0] along dim 1 are empty at once (%s)",
       mx && am && pr ? "ok" : ag_last_error());
    ag_tensor *ma = ag_requires_grad_(ag_empty(AG_SHAPE(1LL << 50, 0, 2), AG_F64), true); /* found by fuzz_api */
    ag_tensor *mb = ag_requires_grad_(ag_ones(AG_SHAPE(2, 3), AG_F64), true);
    ag_tensor *mm = ag_matmul(ma, mb);
    ag_status mst = mm ? ag_backward(ag_sum(mm)) : AG_ERR_ARG;
    ok(mm && ag_numel(mm) == 0 && mst == AG_OK && ag_grad(mb) && ag_get(ag_grad(mb), (int64_t[]){1, 2}) == 0,
       "matmul of [2^50, 0, 2] x [2, 3] and its backward walk none of the 2^50 empty batches (%s)",
       mst == AG_OK ? "ok" : ag_last_error());
    ag_tensor *k0 = ag_matmul(ag_empty(AG_SHAPE(3, 2, 0), AG_F32), ag_empty(AG_SHAPE(0, 4), AG_F32));
    ok(k0 && ag_numel(k0) == 24 && ag_item(ag_sum(ag_abs(k0))) == 0, "matmul of [3, 2, 0] x [0, 4] is [3, 2, 4] of zeros");
    ag_tensor *px = ag_requires_grad_(ag_empty(AG_SHAPE(1LL << 50, 0, 3), AG_F32), true); /* found by fuzz_api */
    ag_tensor *pw = ag_requires_grad_(ag_full(AG_SHAPE(1), 0.25, AG_F32), true), *py = ag_prelu(px, pw);
    ag_status pst = py ? ag_backward(ag_sum(py)) : AG_ERR_ARG;
    ok(py && ag_numel(py) == 0 && pst == AG_OK && ag_grad(pw) && ag_item(ag_grad(pw)) == 0,
       "prelu of [2^50, 0, 3] and its backward walk none of the 2^50 empty lanes (%s)", pst == AG_OK ? "ok" : ag_last_error());
    ag_tensor *ax = ag_requires_grad_(ag_ones(AG_SHAPE(1, 1, 1, 1), AG_F32), true); /* found by fuzz_api */
    ag_tensor *ay = ag_adaptive_avg_pool2d(ax, 1LL << 40, 0);
    ag_status ast = ay ? ag_backward(ag_sum(ay)) : AG_ERR_ARG;
    ok(ay && ag_numel(ay) == 0 && ast == AG_OK && ag_grad(ax) && ag_item(ag_grad(ax)) == 0,
       "adaptive_avg_pool2d to 2^40 x 0 and its backward walk none of the 2^40 empty rows (%s)",
       ast == AG_OK ? "ok" : ag_last_error());
    char *s = ag_to_string(e); /* found by fuzz_api: a timeout walking 2^48 empty rows */
    ok(s && strcmp(s, "tensor([], shape=[281474976710656, 0], dtype=float32)") == 0, "it prints as %s", s ? s : "NULL");
    free(s);
    ag_scope_end();
}

int main(void) {
    test_creation();
    test_layers();
    test_views();
    test_huge_stride();
    test_empty_lanes();
    test_ops();
    test_data();
    test_safetensors();
    test_threads();
    ok(ag_scope_depth() == 0 && ag_live_tensors() == 0, "nothing leaks (%ld live tensors)", ag_live_tensors());
    return tap_done();
}

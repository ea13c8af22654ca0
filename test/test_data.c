/*
 * Data: IDX and CSV readers (round trips, gzip, every error case by its
 * message), the shipped data sets (Iris statistics, truth tables), datasets,
 * random splits, the loader's batches and shuffling, transforms, and the
 * readers under failing allocations.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "agrad/agrad.h"
#include "data/internal.h"
#include "tap.h"
#include "failing_alloc.h"

#ifndef DATA_DIR
#define DATA_DIR "datasets"
#endif

static char dir[] = "/tmp/agrad-data-XXXXXX";

static const char *path_of(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

/* Writes data gzip-compressed the way the gzip tool does: a header naming the file, mtime set. */
static void write_gzip(const char *path, const void *data, size_t n, const char *orig_name) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    gz_header h;
    memset(&h, 0, sizeof h);
    h.name = (Bytef *)orig_name;
    h.time = 1502000000; /* as the 2017 release */
    h.os = 3;
    deflateSetHeader(&zs, &h);
    size_t cap = deflateBound(&zs, (uLong)n) + 256;
    unsigned char *out = malloc(cap);
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    deflate(&zs, Z_FINISH);
    write_file(path, out, cap - zs.avail_out);
    deflateEnd(&zs);
    free(out);
}

/* Reads all of path into a malloc'ed buffer. */
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

/* t's values as doubles in one of two alternating buffers (so two can be compared). */
static double *values(const ag_tensor *t) {
    static double buf[2][1 << 16];
    static int k;
    k ^= 1;
    if (!t || ag_numel(t) > (1 << 16) || ag_copy_to(t, buf[k], 1 << 16, AG_F64)) return NULL;
    return buf[k];
}

static bool same_shape(const ag_tensor *t, ag_shape s) {
    if (!t || ag_ndim(t) != s.ndim) return false;
    for (int i = 0; i < s.ndim; i++)
        if (ag_size(t, i) != s.dim[i]) return false;
    return true;
}

/* ---- IDX -------------------------------------------------------------------------------- */
static void test_idx_round_trip(void) {
    ag_scope_begin();
    static const struct {
        ag_idx_type type;
        double lo, hi;
        const char *name;
    } types[] = {{AG_IDX_U8, 0, 255, "ubyte"},        {AG_IDX_I8, -128, 127, "sbyte"},
                 {AG_IDX_I16, -32768, 32767, "short"}, {AG_IDX_I32, -2147483648.0, 2147483647.0, "int"},
                 {AG_IDX_F32, -3.5, 1e30, "float"},    {AG_IDX_F64, -1e-300, 1e300, "double"}};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        for (int gz = 0; gz < 2; gz++) {
            /* [2, 3, 4] with the type's extremes, zero and a few whole numbers in between */
            double v[24];
            for (int i = 0; i < 24; i++) v[i] = i % 6 == 0 ? types[k].lo : i % 6 == 1 ? types[k].hi : i % 6 == 2 ? 0 : (i % 7) * (types[k].lo < 0 ? -1 : 1);
            ag_tensor *t = ag_from_data(v, AG_SHAPE(2, 3, 4), AG_F64);
            const char *p = path_of(gz ? "rt.idx.gz" : "rt.idx");
            ag_status st = ag_save_idx(t, p, types[k].type, gz);
            ag_tensor *back = ag_load_idx(p, AG_F64);
            double *b = values(back);
            bool same = st == AG_OK && b && same_shape(back, AG_SHAPE(2, 3, 4));
            for (int i = 0; same && i < 24; i++) same = b[i] == (types[k].type == AG_IDX_F32 ? (double)(float)v[i] : v[i]);
            ok(same, "IDX %s %s: write -> read gives the same shape and values%s%s", types[k].name, gz ? "gzip" : "plain",
               same ? "" : ": ", same ? "" : ag_last_error());
            if (types[k].type != AG_IDX_F32 && types[k].type != AG_IDX_F64) {
                ag_tensor *li = ag_load_idx(p, AG_I64);
                ok(li && ag_dtype_of(li) == AG_I64 && ag_get(li, (int64_t[]){0, 0, 1}) == types[k].hi,
                   "IDX %s %s reads as int64 too", types[k].name, gz ? "gzip" : "plain");
            }
        }
    }
    /* the file bytes are exactly the format */
    ag_tensor *lab = ag_from_data((int64_t[]){9, 0, 3}, AG_SHAPE(3), AG_I64);
    ag_save_idx(lab, path_of("lab.idx"), AG_IDX_U8, false);
    size_t n = 0;
    unsigned char *raw = slurp(path_of("lab.idx"), &n);
    static const unsigned char expect[] = {0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 3};
    ok(raw && n == sizeof expect && memcmp(raw, expect, n) == 0, "a label file is 00 00 08 01, big-endian 3, then 3 bytes");
    free(raw);
    /* 0-d and empty tensors */
    ag_save_idx(ag_scalar(-7, AG_F32), path_of("s.idx"), AG_IDX_I16, true);
    ag_tensor *s = ag_load_idx(path_of("s.idx"), AG_F32);
    ok(s && ag_ndim(s) == 0 && ag_item(s) == -7, "a 0-d tensor round trips (ndim 0 header)");
    ag_save_idx(ag_zeros(AG_SHAPE(0, 28, 28), AG_F32), path_of("e.idx"), AG_IDX_U8, true);
    ag_tensor *e = ag_load_idx(path_of("e.idx"), AG_F32);
    ok(same_shape(e, AG_SHAPE(0, 28, 28)), "an empty [0, 28, 28] tensor round trips");
    /* non-contiguous input */
    ag_tensor *tt = ag_transpose(ag_reshape(ag_arange(0, 6, 1, AG_F32), AG_SHAPE(2, 3)), 0, 1);
    ag_save_idx(tt, path_of("t.idx"), AG_IDX_U8, false);
    double *tv = values(ag_load_idx(path_of("t.idx"), AG_F32));
    ok(tv && tv[0] == 0 && tv[1] == 3 && tv[2] == 1 && tv[5] == 5, "a transposed view is written in its logical order");
    ag_scope_end();
}

/* An MNIST-style pair of files written byte by byte and compressed as the gzip tool does. */
static void test_idx_official_layout(void) {
    ag_scope_begin();
    unsigned char img[16 + 2 * 28 * 28];
    static const unsigned char ih[16] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28};
    memcpy(img, ih, 16);
    for (int i = 0; i < 2 * 28 * 28; i++) img[16 + i] = (unsigned char)(i * 7 % 256);
    unsigned char lab[8 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 9, 0};
    write_gzip(path_of("train-images-idx3-ubyte.gz"), img, sizeof img, "train-images-idx3-ubyte");
    write_gzip(path_of("train-labels-idx1-ubyte.gz"), lab, sizeof lab, "train-labels-idx1-ubyte");
    ag_tensor *x = ag_load_idx(path_of("train-images-idx3-ubyte.gz"), AG_F32);
    ag_tensor *y = ag_load_idx(path_of("train-labels-idx1-ubyte.gz"), AG_I64);
    ok(same_shape(x, AG_SHAPE(2, 28, 28)) && ag_dtype_of(x) == AG_F32, "images file (gzip with a file name in its header): [2, 28, 28] float32");
    ok(x && ag_get(x, (int64_t[]){1, 27, 27}) == (double)((2 * 784 - 1) * 7 % 256) &&
           ag_get(x, (int64_t[]){0, 0, 1}) == 7,
       "pixels keep their 0..255 values");
    ok(same_shape(y, AG_SHAPE(2)) && ag_dtype_of(y) == AG_I64 && ag_get(y, (int64_t[]){0}) == 9, "labels file: [2] int64");
    /* the same bytes uncompressed, and as two concatenated gzip members */
    write_file(path_of("plain.idx"), img, sizeof img);
    ag_tensor *xp = ag_load_idx(path_of("plain.idx"), AG_F32);
    ok(xp && ag_get(xp, (int64_t[]){1, 27, 27}) == ag_get(x, (int64_t[]){1, 27, 27}), "uncompressed, the same values");
    size_t n1, n2;
    write_gzip(path_of("a.gz"), img, 100, "a");
    write_gzip(path_of("b.gz"), img + 100, sizeof img - 100, "b");
    unsigned char *a = slurp(path_of("a.gz"), &n1), *b = slurp(path_of("b.gz"), &n2);
    unsigned char *cat = malloc(n1 + n2);
    memcpy(cat, a, n1);
    memcpy(cat + n1, b, n2);
    write_file(path_of("multi.gz"), cat, n1 + n2);
    ag_tensor *xm = ag_load_idx(path_of("multi.gz"), AG_F32);
    ok(xm && ag_get(xm, (int64_t[]){1, 27, 27}) == ag_get(x, (int64_t[]){1, 27, 27}), "a multi-member gzip file reads whole");
    free(a);
    free(b);
    free(cat);
    ag_scope_end();
}

/* Writes a gzip file of the header's bytes followed by `zeros` zero bytes, compressed a
 * piece at a time (a gigabyte of zeros makes about a megabyte). */
static void write_gzip_zeros(const char *path, const void *header, size_t hlen, size_t zeros) {
    static unsigned char zero[1 << 16], out[1 << 16];
    FILE *f = fopen(path, "wb");
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    zs.next_in = (Bytef *)header;
    zs.avail_in = (uInt)hlen;
    for (int done = 0; !done;) {
        if (zs.avail_in == 0 && zeros) {
            size_t piece = zeros < sizeof zero ? zeros : sizeof zero;
            zs.next_in = zero;
            zs.avail_in = (uInt)piece;
            zeros -= piece;
        }
        zs.next_out = out;
        zs.avail_out = sizeof out;
        done = deflate(&zs, zeros || zs.avail_in ? Z_NO_FLUSH : Z_FINISH) == Z_STREAM_END;
        fwrite(out, 1, sizeof out - zs.avail_out, f);
    }
    deflateEnd(&zs);
    fclose(f);
}

/* A gzip IDX file is decompressed only as far as its header says: memory stays bounded. */
/* A saved IDX file is created as fopen would: 0666 less the umask. */
static void test_idx_mode(void) {
    ag_tensor *t = ag_zeros(AG_SHAPE(2), AG_F32);
    const char *p = path_of("mode.idx");
    mode_t old = umask(027);
    struct stat st;
    bool saved = ag_save_idx(t, p, AG_IDX_U8, false) == AG_OK && stat(p, &st) == 0;
    unsigned mode = saved ? (unsigned)(st.st_mode & 0777) : 0; /* read only after stat filled st */
    ok(saved && mode == 0640, "under umask 027 a saved IDX file is 0640 (%o)", mode);
    umask(old);
    unlink(p);
    ag_release(t);
}

static void test_idx_gzip_bounded(void) {
    const char *p = path_of("bomb.idx.gz");
    /* header [1] ubyte, then 64 MiB of zeros */
    write_gzip_zeros(p, "\x00\x00\x08\x01\x00\x00\x00\x01", 8, (size_t)64 << 20);
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    ag_dtype dtypes[2] = {AG_U8, AG_F32};
    for (int k = 0; k < 2; k++) {
        ag_set_allocator(peak_alloc, NULL);
        live_bytes = peak_bytes = 0;
        cap_bytes = 16u << 20; /* the whole stream would need 64 MiB */
        ag_clear_error();
        ag_tensor *t = ag_load_idx(p, dtypes[k]);
        cap_bytes = SIZE_MAX;
        ag_set_allocator(NULL, NULL);
        ok(!t && ag_last_status() == AG_ERR_FORMAT &&
               strstr(ag_last_error(), "needs 1 data bytes after the 8-byte header, but more data follow them (from decompressed byte 9)"),
           "a %ld-byte gzip IDX (%s) whose header says [1] but holds 64 MiB: %s", size, ag_dtype_name(dtypes[k]),
           ag_last_error());
        ok(peak_bytes < (size_t)size + (1u << 20), "it stops where the header says: peak %zu KiB (the file is %ld KiB)",
           peak_bytes >> 10, size >> 10);
        ag_release(t);
    }
    /* A header claiming 2^40 bytes the compressed data cannot hold: nothing is allocated for it. */
    write_gzip_zeros(p, "\x00\x00\x08\x02\x00\x10\x00\x00\x00\x10\x00\x00", 12, 1000);
    ag_set_allocator(peak_alloc, NULL);
    live_bytes = peak_bytes = 0;
    ag_clear_error();
    ag_tensor *t = ag_load_idx(p, AG_U8);
    ag_set_allocator(NULL, NULL);
    ok(!t && ag_last_status() == AG_ERR_FORMAT &&
           strstr(ag_last_error(), "truncated at decompressed byte 1012: shape [1048576, 1048576] of ubyte needs 1099511627776 data bytes after the 12-byte header, only 1000 are there"),
       "a gzip IDX claiming 1 TiB: %s", ag_last_error());
    ok(peak_bytes < 1u << 20, "without allocating it (peak %zu KiB)", peak_bytes >> 10);
    ag_release(t);
    unlink(p);
}

static void expect_idx_error(const char *what, const void *bytes, size_t n, bool gz, ag_status status, const char *needle1,
                             const char *needle2) {
    const char *p = path_of(gz ? "bad.idx.gz" : "bad.idx");
    if (gz) write_gzip(p, bytes, n, "bad.idx");
    else write_file(p, bytes, n);
    ag_clear_error();
    ag_tensor *t = ag_load_idx(p, AG_F32);
    ok(!t && ag_last_status() == status && strstr(ag_last_error(), p) && strstr(ag_last_error(), needle1) &&
           (!needle2 || strstr(ag_last_error(), needle2)),
       "IDX %s: %s", what, ag_last_error());
    ag_release(t);
}

static void test_idx_errors(void) {
    ag_clear_error();
    ok(!ag_load_idx(path_of("missing.idx"), AG_F32) && ag_last_status() == AG_ERR_IO &&
           strstr(ag_last_error(), "missing.idx") && strstr(ag_last_error(), "No such file"),
       "a missing file: %s", ag_last_error());
    ok(!ag_load_idx(dir, AG_F32) && ag_last_status() == AG_ERR_IO, "a directory: %s", ag_last_error());
    expect_idx_error("an empty file", "", 0, false, AG_ERR_FORMAT, "truncated at byte 0", "magic");
    expect_idx_error("a file cut inside the magic", "\0\0", 2, false, AG_ERR_FORMAT, "truncated at byte 2", NULL);
    expect_idx_error("bad magic", "\x01\x00\x08\x01\x00\x00\x00\x01\x05", 9, false, AG_ERR_FORMAT, "bad magic number 01 00 08 01", "byte 0");
    expect_idx_error("a text file", "hello world\n", 12, false, AG_ERR_FORMAT, "bad magic", NULL);
    expect_idx_error("an unknown element type", "\x00\x00\x0a\x01\x00\x00\x00\x01\x05", 9, false, AG_ERR_FORMAT,
                     "unknown element type 0x0a", "byte 2");
    expect_idx_error("too many dims", "\x00\x00\x08\x11", 4, false, AG_ERR_FORMAT, "17 dimensions", "at most 16");
    expect_idx_error("a header cut short", "\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", 10, false, AG_ERR_FORMAT,
                     "truncated at byte 10", "needs 16 bytes");
    expect_idx_error("truncated data", "\x00\x00\x08\x01\x00\x00\x00\x0a\x01\x02\x03\x04\x05", 13, false, AG_ERR_FORMAT,
                     "truncated at byte 13", "needs 10 data bytes");
    expect_idx_error("truncated int32 data", "\x00\x00\x0c\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00", 14, false,
                     AG_ERR_FORMAT, "truncated", "needs 8 data bytes");
    expect_idx_error("extra bytes after the data", "\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03\x04\x05", 13, false,
                     AG_ERR_FORMAT, "size mismatch", "2 extra from byte 11");
    expect_idx_error("sizes whose product overflows", "\x00\x00\x0e\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                     17, false, AG_ERR_FORMAT, "truncated", "needs more than");
    expect_idx_error("a zero size beside sizes that multiply beyond 2^60 (found by fuzzing)",
                     "\x00\x00\x0e\x03\x00\x00\x00\x00\x7f\xff\xff\xff\x7f\xff\xff\xff", 16, false, AG_ERR_FORMAT,
                     "shape [0, 2147483647, 2147483647] at byte 4 is too large", NULL);
    expect_idx_error("extra bytes inside gzip", "\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03\x04\x05", 13, true,
                     AG_ERR_FORMAT, "size mismatch", "but more data follow them (from decompressed byte 11)");
    expect_idx_error("truncated data inside gzip", "\x00\x00\x08\x01\x00\x00\x00\x0a\x01\x02\x03\x04\x05", 13, true,
                     AG_ERR_FORMAT, "truncated at decompressed byte 13", NULL);
    expect_idx_error("bad magic inside gzip", "\x01\x00\x08\x01\x00\x00\x00\x01\x05", 9, true, AG_ERR_FORMAT, "bad magic",
                     "decompressed byte 0");

    /* damaged gzip streams */
    unsigned char img[8 + 1000];
    memcpy(img, "\x00\x00\x08\x01\x00\x00\x03\xe8", 8);
    for (int i = 0; i < 1000; i++) img[8 + i] = (unsigned char)(i * 37 % 251);
    write_gzip(path_of("g.gz"), img, sizeof img, "g");
    size_t n;
    unsigned char *gz = slurp(path_of("g.gz"), &n);
    ag_tensor *t;
    write_file(path_of("cut.gz"), gz, n / 2);
    ag_clear_error();
    t = ag_load_idx(path_of("cut.gz"), AG_F32);
    ok(!t && ag_last_status() == AG_ERR_FORMAT && strstr(ag_last_error(), "truncated gzip data") &&
           strstr(ag_last_error(), "cut.gz"),
       "a gzip file cut in half: %s", ag_last_error());
    write_file(path_of("cut2.gz"), gz, n - 4);
    ag_clear_error();
    t = ag_load_idx(path_of("cut2.gz"), AG_F32);
    ok(!t && ag_last_status() == AG_ERR_FORMAT && strstr(ag_last_error(), "truncated gzip data"),
       "a gzip file missing its length trailer: %s", ag_last_error());
    unsigned char *bad = malloc(n);
    memcpy(bad, gz, n);
    for (size_t i = n / 3; i < n / 3 + 8; i++) bad[i] ^= 0x5a;
    write_file(path_of("corrupt.gz"), bad, n);
    ag_clear_error();
    t = ag_load_idx(path_of("corrupt.gz"), AG_F32);
    ok(!t && ag_last_status() == AG_ERR_FORMAT && strstr(ag_last_error(), "gzip") && strstr(ag_last_error(), "compressed byte"),
       "corrupt gzip data: %s", ag_last_error());
    memcpy(bad, gz, n);
    bad[n - 8] ^= 1; /* the CRC */
    write_file(path_of("crc.gz"), bad, n);
    ag_clear_error();
    t = ag_load_idx(path_of("crc.gz"), AG_F32);
    ok(!t && ag_last_status() == AG_ERR_FORMAT && strstr(ag_last_error(), "corrupt gzip data"), "a wrong CRC: %s",
       ag_last_error());
    unsigned char *trail = malloc(n + 3);
    memcpy(trail, gz, n);
    memcpy(trail + n, "xyz", 3);
    write_file(path_of("trail.gz"), trail, n + 3);
    ag_clear_error();
    t = ag_load_idx(path_of("trail.gz"), AG_F32);
    ok(!t && ag_last_status() == AG_ERR_FORMAT && strstr(ag_last_error(), "trailing garbage"), "garbage after the gzip data: %s",
       ag_last_error());
    free(trail);
    free(bad);
    free(gz);

    /* dtypes */
    ag_tensor *f = ag_from_data((double[]){1.5, 2}, AG_SHAPE(2), AG_F64);
    ag_save_idx(f, path_of("f.idx"), AG_IDX_F64, false);
    ag_clear_error();
    ok(!ag_load_idx(path_of("f.idx"), AG_I64) && ag_last_status() == AG_ERR_DTYPE && strstr(ag_last_error(), "double"),
       "float elements cannot load as int64: %s", ag_last_error());
    ok(!ag_load_idx(path_of("f.idx"), AG_BOOL) && ag_last_status() == AG_ERR_DTYPE, "nor as bool: %s", ag_last_error());

    /* the writer refuses values its type cannot hold, and paths it cannot write */
    ag_tensor *big = ag_from_data((double[]){255, 256}, AG_SHAPE(2), AG_F64);
    ag_clear_error();
    ok(ag_save_idx(big, path_of("big.idx"), AG_IDX_U8, false) == AG_ERR_VALUE && strstr(ag_last_error(), "element 1 is 256"),
       "256 does not fit ubyte: %s", ag_last_error());
    ok(ag_save_idx(f, path_of("frac.idx"), AG_IDX_I32, false) == AG_ERR_VALUE && strstr(ag_last_error(), "element 0 is 1.5"),
       "1.5 does not fit int: %s", ag_last_error());
    ok(access(path_of("big.idx"), F_OK) != 0, "a refused save leaves no file");
    ok(ag_save_idx(f, "/nonexistent-dir/x.idx", AG_IDX_F64, true) == AG_ERR_IO && strstr(ag_last_error(), "/nonexistent-dir/x.idx"),
       "an unwritable path: %s", ag_last_error());
    ok(ag_save_idx(f, path_of("x.idx"), (ag_idx_type)0x0a, false) == AG_ERR_ARG, "an unknown type: %s", ag_last_error());
    ag_release(f);
    ag_release(big);
}

/* ---- CSV -------------------------------------------------------------------------------- */
static void test_iris(void) {
    ag_csv *csv = ag_load_csv(DATA_DIR "/iris.csv", &(ag_csv_options){.header = true, .has_labels = true, .label_column = -1});
    ok(csv != NULL, "datasets/iris.csv loads (%s)", csv ? "ok" : ag_last_error());
    if (!csv) return;
    ag_tensor *x = ag_csv_features(csv), *y = ag_csv_labels(csv);
    ok(same_shape(x, AG_SHAPE(150, 4)) && ag_dtype_of(x) == AG_F32, "features [150, 4] float32");
    ok(same_shape(y, AG_SHAPE(150)) && ag_dtype_of(y) == AG_I64, "labels [150] int64");
    ok(ag_csv_num_classes(csv) == 3 && !strcmp(ag_csv_class_name(csv, 0), "setosa") &&
           !strcmp(ag_csv_class_name(csv, 1), "versicolor") && !strcmp(ag_csv_class_name(csv, 2), "virginica") &&
           ag_csv_class_name(csv, 3) == NULL,
       "3 classes named in order of appearance");
    ok(!strcmp(ag_csv_column_name(csv, 0), "sepal_length") && !strcmp(ag_csv_column_name(csv, 3), "petal_width") &&
           ag_csv_column_name(csv, 4) == NULL,
       "feature column names from the header");
    double *v = values(x), mean[4] = {0};
    for (int i = 0; i < 150; i++)
        for (int j = 0; j < 4; j++) mean[j] += v[i * 4 + j] / 150;
    static const double known[4] = {5.843, 3.057, 3.758, 1.199};
    for (int j = 0; j < 4; j++) close_to(mean[j], known[j], 5e-4, "column %d mean %.4f (known %.3f)", j, mean[j], known[j]);
    double *lv = values(y);
    int count[3] = {0};
    bool in_blocks = true;
    for (int i = 0; i < 150; i++) {
        count[(int)lv[i]]++;
        in_blocks = in_blocks && lv[i] == i / 50;
    }
    ok(count[0] == 50 && count[1] == 50 && count[2] == 50 && in_blocks, "50 samples per class");
    ok(v[0] == 5.1f && v[3] == 0.2f && v[149 * 4] == 5.9f && v[149 * 4 + 3] == 1.8f, "first and last rows as published");
    ag_csv_free(csv);
    csv = ag_load_csv(DATA_DIR "/iris.csv",
                      &(ag_csv_options){.header = true, .has_labels = true, .label_column = 4, .dtype = AG_F64});
    v = csv ? values(ag_csv_features(csv)) : NULL;
    double s = 0;
    for (int i = 0; v && i < 150; i++) s += v[i * 4 + 1];
    ok(csv && ag_dtype_of(ag_csv_features(csv)) == AG_F64 && fabs(s - 458.6) < 1e-9,
       "float64 features, label column given as 4: sepal width sums to 458.6");
    ag_csv_free(csv);
}

static void test_truth_tables(void) {
    static const char *names[3] = {"and", "or", "xor"};
    static const int expect[3][4] = {{0, 0, 0, 1}, {0, 1, 1, 1}, {0, 1, 1, 0}};
    for (int k = 0; k < 3; k++) {
        char p[256];
        snprintf(p, sizeof p, DATA_DIR "/%s.csv", names[k]);
        ag_csv *csv = ag_load_csv(p, &(ag_csv_options){.header = true, .has_labels = true, .label_column = -1});
        double *x = csv ? values(ag_csv_features(csv)) : NULL;
        bool good = x && same_shape(ag_csv_features(csv), AG_SHAPE(4, 2)) && ag_csv_num_classes(csv) == 2 &&
                    ag_csv_class_name(csv, 0) == NULL;
        for (int i = 0; good && i < 4; i++)
            good = x[2 * i] == (i >> 1) && x[2 * i + 1] == (i & 1) &&
                   ag_get(ag_csv_labels(csv), (int64_t[]){i}) == expect[k][i];
        ok(good, "datasets/%s.csv: the 4 rows of the truth table with integer labels", names[k]);
        ag_csv_free(csv);
    }
}

static void test_csv_dialects(void) {
    /* CRLF, a byte order mark, spaces, quotes with a comma and a doubled quote, blank trailing lines */
    write_text(path_of("d.csv"), "\xEF\xBB\xBF" "a,\"b\",label\r\n"
                                 "1, 2 ,\"x\"\r\n"
                                 "\"3.5\",-4e2,\"y, \"\"z\"\"\"\r\n"
                                 "\r\n"
                                 "  5 ,6,x\r\n"
                                 "\r\n\r\n");
    ag_csv *csv = ag_load_csv(path_of("d.csv"), &(ag_csv_options){.header = true, .has_labels = true, .label_column = -1});
    double *v = csv ? values(ag_csv_features(csv)) : NULL;
    double *l = v ? values(ag_csv_labels(csv)) : NULL;
    ok(l && same_shape(ag_csv_features(csv), AG_SHAPE(3, 2)) && v[0] == 1 && v[1] == 2 && v[2] == 3.5 && v[3] == -400 &&
           v[4] == 5 && v[5] == 6,
       "CRLF, BOM, spaces, quoted numbers, blank lines: %s", csv ? "values right" : ag_last_error());
    ok(l && l[0] == 0 && l[1] == 1 && l[2] == 0 && !strcmp(ag_csv_class_name(csv, 1), "y, \"z\"") &&
           !strcmp(ag_csv_column_name(csv, 1), "b"),
       "quoted labels with a delimiter and doubled quotes; quoted header names");
    ag_csv_free(csv);

    /* no header, label first, negative integer labels, no trailing newline */
    write_text(path_of("n.csv"), "-1,0.5,7\n1,0.25,8\n3,1,9");
    csv = ag_load_csv(path_of("n.csv"), &(ag_csv_options){.has_labels = true, .label_column = 0});
    l = csv ? values(ag_csv_labels(csv)) : NULL;
    ok(l && l[0] == -1 && l[1] == 1 && l[2] == 3 && ag_csv_num_classes(csv) == 4 && ag_csv_column_name(csv, 0) == NULL &&
           ag_get(ag_csv_features(csv), (int64_t[]){2, 1}) == 9,
       "label column 0, integer labels kept as they are (max 3: 4 classes), no final newline");
    ag_csv_free(csv);

    /* without labels, tab separated, a quoted cell spanning two lines in the header */
    write_text(path_of("t.tsv"), "\"first\ncolumn\"\tsecond\n1\t2\n3\t4\n");
    csv = ag_load_csv(path_of("t.tsv"), &(ag_csv_options){.header = true, .delimiter = '\t'});
    ok(csv && same_shape(ag_csv_features(csv), AG_SHAPE(2, 2)) && ag_csv_labels(csv) == NULL &&
           !strcmp(ag_csv_column_name(csv, 0), "first\ncolumn") && ag_get(ag_csv_features(csv), (int64_t[]){1, 0}) == 3,
       "tab separated without labels: features only");
    ag_csv_free(csv);

    /* NULL options: all columns are features */
    write_text(path_of("plain.csv"), "1,2\n3,4\n");
    csv = ag_load_csv(path_of("plain.csv"), NULL);
    ok(csv && same_shape(ag_csv_features(csv), AG_SHAPE(2, 2)) && !ag_csv_labels(csv), "NULL options");
    ag_csv_free(csv);

    /* a header and no rows */
    write_text(path_of("h.csv"), "a,b,c\n");
    csv = ag_load_csv(path_of("h.csv"), &(ag_csv_options){.header = true, .has_labels = true, .label_column = 1});
    ok(csv && same_shape(ag_csv_features(csv), AG_SHAPE(0, 2)) && same_shape(ag_csv_labels(csv), AG_SHAPE(0)),
       "a header without rows gives [0, 2] features and [0] labels");
    ag_csv_free(csv);

    /* gzip-compressed CSV */
    const char *text = "x,y\n1,2\n";
    write_gzip(path_of("c.csv.gz"), text, strlen(text), "c.csv");
    csv = ag_load_csv(path_of("c.csv.gz"), &(ag_csv_options){.header = true, .has_labels = true, .label_column = -1});
    ok(csv && ag_get(ag_csv_features(csv), (int64_t[]){0, 0}) == 1 && ag_get(ag_csv_labels(csv), (int64_t[]){0}) == 2,
       "a gzip-compressed CSV reads the same");
    ag_csv_free(csv);
}

static void expect_csv_error(const char *what, const char *text, const ag_csv_options *o, ag_status status,
                             const char *needle) {
    const char *p = path_of("bad.csv");
    write_text(p, text);
    ag_clear_error();
    ag_csv *csv = ag_load_csv(p, o);
    ok(!csv && ag_last_status() == status && strstr(ag_last_error(), p) && strstr(ag_last_error(), needle), "CSV %s: %s",
       what, ag_last_error());
    ag_csv_free(csv);
}

static void test_csv_errors(void) {
    ag_csv_options lab = {.header = true, .has_labels = true, .label_column = -1};
    expect_csv_error("a non-numeric cell", "a,b,c\n1,2,x\n3,abc,y\n", &lab, AG_ERR_FORMAT,
                     "line 3, column 2: \"abc\" is not a number");
    expect_csv_error("a number followed by text", "1,2.5kg\n", NULL, AG_ERR_FORMAT, "line 1, column 2: \"2.5kg\" is not a number");
    expect_csv_error("a blank line still counts", "1,2\n\n\n3,4\n5,?\n", NULL, AG_ERR_FORMAT, "line 5, column 2");
    expect_csv_error("an empty cell", "1,,3\n", NULL, AG_ERR_FORMAT, "line 1, column 2: empty cell");
    expect_csv_error("an empty label", "a,b\n1,\n", &lab, AG_ERR_FORMAT, "line 2, column 2: empty cell");
    expect_csv_error("a short row", "a,b,c\n1,2,x\n3,4\n", &lab, AG_ERR_FORMAT, "line 3: 2 columns, expected 3 (as on line 1)");
    expect_csv_error("a long row", "1,2\n3,4,5\n", NULL, AG_ERR_FORMAT, "line 2: 3 columns, expected 2");
    expect_csv_error("an unterminated quote", "1,2\n3,\"4\n5,6\n", NULL, AG_ERR_FORMAT,
                     "line 2, column 2: unterminated quoted cell");
    expect_csv_error("text after a closing quote", "1,\"2\"3\n", NULL, AG_ERR_FORMAT,
                     "line 1, column 2: unexpected character after a closing quote");
    const char nul[] = "1,2\n3,4\0\n";
    const char *p = path_of("nul.csv");
    write_file(p, nul, sizeof nul - 1);
    ag_clear_error();
    ok(!ag_load_csv(p, NULL) && ag_last_status() == AG_ERR_FORMAT && strstr(ag_last_error(), "line 2, column 2: NUL byte"),
       "CSV a NUL byte: %s", ag_last_error());
    expect_csv_error("an empty file", "", NULL, AG_ERR_FORMAT, "empty file");
    expect_csv_error("only blank lines", "\n \r\n\n", &lab, AG_ERR_FORMAT, "empty file");
    expect_csv_error("a label column out of range", "1,2\n", &(ag_csv_options){.has_labels = true, .label_column = 2},
                     AG_ERR_ARG, "label column 2 is out of range for 2 columns");
    expect_csv_error("a negative label column out of range", "1,2\n",
                     &(ag_csv_options){.has_labels = true, .label_column = -3}, AG_ERR_ARG, "label column -3");
    expect_csv_error("int64 features", "1,2\n", &(ag_csv_options){.dtype = AG_I64}, AG_ERR_DTYPE, "float32 or float64");
    expect_csv_error("a quote as delimiter", "1,2\n", &(ag_csv_options){.delimiter = '"'}, AG_ERR_ARG, "delimiter");
    ag_clear_error();
    ok(!ag_load_csv(path_of("nope.csv"), NULL) && ag_last_status() == AG_ERR_IO && strstr(ag_last_error(), "nope.csv"),
       "CSV a missing file: %s", ag_last_error());
}

/* ---- datasets and loader ---------------------------------------------------------------- */
/* x[i] = (i, 1000 + i), y[i] = i: every value says which sample it came from. */
static ag_dataset *numbered(int64_t n) {
    ag_scope_begin();
    ag_tensor *a = ag_arange(0, (double)n, 1, AG_F32);
    ag_tensor *x = ag_stack((ag_tensor *[]){a, ag_add_scalar(a, 1000)}, 2, 1);
    ag_tensor *y = ag_to_dtype(a, AG_I64);
    ag_dataset *ds = ag_tensor_dataset(x, y);
    ag_scope_end();
    return ds;
}

/* Runs one epoch, appending each sample's id to ids; returns the number of batches, -1 if a batch is inconsistent. */
static int epoch(ag_loader *l, int64_t *ids, int64_t *count, int64_t *last_batch) {
    ag_tensor *x, *y;
    int batches = 0, r;
    *count = 0;
    ag_scope_begin();
    while ((r = ag_loader_next(l, &x, &y)) > 0) {
        int64_t b = ag_size(x, 0);
        if (ag_ndim(x) != 2 || ag_size(x, 1) != 2 || ag_size(y, 0) != b || ag_dtype_of(y) != AG_I64) batches = -1000;
        double xv[2 * 256], yv[256];
        ag_copy_to(x, xv, 512, AG_F64);
        ag_copy_to(y, yv, 256, AG_F64);
        for (int64_t i = 0; i < b; i++) {
            if (xv[2 * i] != yv[i] || xv[2 * i + 1] != 1000 + yv[i]) batches = -1000;
            ids[(*count)++] = (int64_t)yv[i];
        }
        *last_batch = b;
        batches++;
    }
    ag_scope_end();
    return r < 0 ? -1 : batches;
}

static bool is_permutation(const int64_t *ids, int64_t count, int64_t n) {
    if (count != n) return false;
    char seen[1024] = {0};
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= n || seen[ids[i]]) return false;
        seen[ids[i]] = 1;
    }
    return true;
}

static void test_dataset(void) {
    ag_dataset *ds = numbered(10);
    ok(ds && ag_dataset_len(ds) == 10, "tensor_dataset of 10 samples");
    ag_scope_begin();
    ag_tensor *x, *y;
    ok(ag_dataset_get(ds, 3, &x, &y) == AG_OK && same_shape(x, AG_SHAPE(2)) && ag_get(x, (int64_t[]){1}) == 1003 &&
           ag_ndim(y) == 0 && ag_item(y) == 3,
       "get(3): x [2] = (3, 1003), y 0-d = 3");
    ok(ag_dataset_get(ds, -1, &x, NULL) == AG_OK && ag_get(x, (int64_t[]){0}) == 9, "get(-1) is the last sample");
    ok(ag_dataset_get(ds, 10, &x, &y) == AG_ERR_INDEX && !x && !y && strstr(ag_last_error(), "10"), "get(10): %s",
       ag_last_error());
    ag_clear_error();
    ok(ag_tensor_dataset(ag_zeros(AG_SHAPE(3, 2), AG_F32), ag_zeros(AG_SHAPE(4), AG_I64)) == NULL &&
           ag_last_status() == AG_ERR_SHAPE,
       "x and y of different lengths: %s", ag_last_error());
    ag_clear_error();
    ok(ag_tensor_dataset(NULL, ag_zeros(AG_SHAPE(4), AG_I64)) == NULL && ag_last_status() == AG_OK,
       "a NULL input passes through without a new message");
    /* non-contiguous inputs are copied; the dataset outlives its tensors */
    ag_tensor *xt = ag_t(ag_reshape(ag_arange(0, 6, 1, AG_F64), AG_SHAPE(2, 3)));
    ag_dataset *dt = ag_tensor_dataset(xt, xt);
    ag_scope_end();
    ag_scope_begin();
    ok(dt && ag_dataset_get(dt, 2, &x, NULL) == AG_OK && ag_get(x, (int64_t[]){0}) == 2 && ag_get(x, (int64_t[]){1}) == 5,
       "a transposed x: sample 2 is its row 2 = (2, 5); the dataset outlives the scope of its tensors");
    ag_dataset_free(dt);

    int64_t idx[4] = {9, 0, 9, 4};
    ag_dataset *sub = ag_subset(ds, idx, 4);
    int64_t idx2[2] = {3, 1};
    ag_dataset *sub2 = ag_subset(sub, idx2, 2);
    ok(sub2 && ag_dataset_len(sub2) == 2 && ag_dataset_index(sub2, 0) == 4 && ag_dataset_index(sub2, 1) == 0,
       "a subset of a subset maps to the underlying rows (4, 0)");
    ok(ag_dataset_tensors(sub, &x, &y) == AG_OK && same_shape(x, AG_SHAPE(4, 2)) && ag_get(y, (int64_t[]){2}) == 9 &&
           ag_get(x, (int64_t[]){3, 1}) == 1004,
       "dataset_tensors stacks a subset's samples in its order");
    ag_clear_error();
    ok(ag_subset(ds, (int64_t[]){10}, 1) == NULL && ag_last_status() == AG_ERR_INDEX, "subset index out of range: %s",
       ag_last_error());
    ag_dataset_free(sub2);
    ag_dataset_free(sub);
    ag_scope_end();
    ag_dataset_free(ds);
}

static void test_loader(void) {
    int64_t ids[4][200], count, last;
    ag_dataset *ds = numbered(10);
    ag_loader *l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 3});
    ag_dataset_free(ds); /* the loader keeps what it needs */
    ok(l && ag_loader_num_batches(l) == 4, "10 samples, batch 3: 4 batches");
    int nb = epoch(l, ids[0], &count, &last);
    bool in_order = count == 10;
    for (int i = 0; in_order && i < 10; i++) in_order = ids[0][i] == i;
    ok(nb == 4 && last == 1 && in_order, "without shuffle: batches of 3, 3, 3, 1 in dataset order");
    ok(ag_loader_epoch(l) == 1, "one epoch done");
    nb = epoch(l, ids[1], &count, &last);
    ok(nb == 4 && count == 10 && ag_loader_epoch(l) == 2, "the next call starts epoch 2");
    ag_loader_free(l);

    ds = numbered(10);
    l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 3, .drop_last = true});
    nb = epoch(l, ids[0], &count, &last);
    ok(ag_loader_num_batches(l) == 3 && nb == 3 && count == 9 && last == 3, "drop_last: 3 full batches, sample 9 left out");
    ag_loader_free(l);
    l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 20});
    nb = epoch(l, ids[0], &count, &last);
    ok(ag_loader_num_batches(l) == 1 && nb == 1 && count == 10, "a batch larger than the dataset: one batch of 10");
    ag_loader_free(l);
    l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 20, .drop_last = true});
    nb = epoch(l, ids[0], &count, &last);
    ok(ag_loader_num_batches(l) == 0 && nb == 0, "... with drop_last: none");
    ag_loader_free(l);
    l = ag_loader_new(ds, NULL);
    ok(l && ag_loader_num_batches(l) == 10, "NULL options: batch size 1");
    ag_loader_free(l);
    ag_clear_error();
    ok(!ag_loader_new(ds, &(ag_loader_options){.batch_size = -2}) && ag_last_status() == AG_ERR_ARG, "negative batch size: %s",
       ag_last_error());
    ag_dataset_free(ds);

    /* shuffling: every epoch a permutation, a different one each epoch, the same sequence from the same seed */
    ds = numbered(100);
    ag_loader_options sh = {.batch_size = 16, .shuffle = true, .seed = 42};
    l = ag_loader_new(ds, &sh);
    bool perms = true;
    for (int e = 0; e < 3; e++) {
        nb = epoch(l, ids[e], &count, &last);
        perms = perms && nb == 7 && last == 4 && is_permutation(ids[e], count, 100);
    }
    ok(perms, "shuffle: each of 3 epochs covers every sample exactly once in 7 batches");
    ok(memcmp(ids[0], ids[1], 100 * sizeof(int64_t)) != 0 && memcmp(ids[1], ids[2], 100 * sizeof(int64_t)) != 0,
       "the order differs from epoch to epoch");
    bool sorted = true;
    for (int i = 0; i < 100; i++) sorted = sorted && ids[0][i] == i;
    ok(!sorted, "and is not the dataset order");
    ag_loader_free(l);
    l = ag_loader_new(ds, &sh);
    ag_manual_seed(1); /* the global generator does not matter */
    ag_tensor *noise = ag_rand(AG_SHAPE(10), AG_F32);
    bool same = true;
    for (int e = 0; e < 3; e++) {
        ag_release(ag_rand(AG_SHAPE(5), AG_F32));
        epoch(l, ids[3], &count, &last);
        same = same && count == 100 && memcmp(ids[3], ids[e], 100 * sizeof(int64_t)) == 0;
    }
    ag_release(noise);
    ok(same, "a new loader with the same seed repeats the same 3 orders, whatever the global generator does");
    ag_loader_free(l);
    l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 16, .shuffle = true, .seed = 43});
    epoch(l, ids[3], &count, &last);
    ok(memcmp(ids[3], ids[0], 100 * sizeof(int64_t)) != 0, "another seed gives another order");
    /* reset in the middle of an epoch */
    ag_tensor *x, *y;
    ag_scope_begin();
    ok(ag_loader_next(l, &x, &y) == 1 && ag_size(x, 0) == 16, "a first batch of epoch 2");
    ag_loader_reset(l);
    ag_scope_end();
    nb = epoch(l, ids[3], &count, &last);
    ok(nb == 7 && is_permutation(ids[3], count, 100) && ag_loader_epoch(l) == 3,
       "after reset a whole new epoch (3) runs");
    ag_scope_begin();
    ok(ag_loader_next(l, &x, NULL) == 1 && x, "y may be skipped");
    ag_scope_end();
    ag_loader_free(l);

    /* a loader over a split part yields only that part's samples */
    ag_dataset *parts[2];
    ag_random_split(ds, (double[]){0.8, 0.2}, 2, 5, parts);
    l = ag_loader_new(parts[1], &(ag_loader_options){.batch_size = 8, .shuffle = true, .seed = 9});
    epoch(l, ids[0], &count, &last);
    bool inside = count == 20;
    for (int i = 0; inside && i < 20; i++) {
        bool found = false;
        for (int j = 0; j < 20; j++) found = found || ag_dataset_index(parts[1], j) == ids[0][i];
        inside = found;
    }
    ok(inside, "a shuffled loader over the 20-sample split part gives exactly its samples");
    ag_loader_free(l);
    ag_dataset_free(parts[0]);
    ag_dataset_free(parts[1]);
    ag_dataset_free(ds);
}

/* DistributedSampler's shares: 10 samples over 3 replicas, padded (4 each, the
 * order's first two again) or cut (3 each, the last left out); shuffled with one
 * seed on every rank, the shares partition the same order; the state resumes. */
static void test_loader_shards(void) {
    ag_dataset *ds = numbered(10);
    int64_t ids[3][200], count, last, full[200];
    ag_loader *whole = ag_loader_new(ds, &(ag_loader_options){.batch_size = 2, .shuffle = true, .seed = 9});
    epoch(whole, full, &count, &last);
    for (int drop = 0; drop < 2; drop++) {
        int seen[10] = {0};
        bool shares = true, cyclic = true;
        int64_t per = drop ? 3 : 4;
        for (int r = 0; r < 3; r++) {
            ag_loader *l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 2, .shuffle = true, .seed = 9,
                                                                 .num_replicas = 3, .rank = r, .shard_drop_last = drop});
            int nb = epoch(l, ids[r], &count, &last);
            shares &= l && nb == (drop ? 2 : 2) && ag_loader_num_batches(l) == 2 && count == per;
            for (int k = 0; k < count; k++) {
                seen[ids[r][k]]++;
                cyclic &= ids[r][k] == full[(r + 3 * k) % 10]; /* the shuffled order's positions r, r+3, ... */
            }
            ag_loader_free(l);
        }
        bool cover = true;
        for (int i = 0; i < 10; i++) {
            int want = drop ? (full[9] == i ? 0 : 1) : (i == full[0] || i == full[1] ? 2 : 1);
            cover &= seen[i] == want;
        }
        ok(shares && cyclic, "%s: 3 ranks get %lld samples each, positions r, r+3, ... of the one shuffled order",
           drop ? "shard_drop_last" : "padding", (long long)per);
        ok(cover, "%s: %s", drop ? "shard_drop_last" : "padding",
           drop ? "the shares are disjoint and leave out only the order's last sample"
                : "every sample once, the order's first two twice (the padding)");
    }
    ag_loader_free(whole);

    /* Resuming mid-epoch from a state dict gives the rest of this rank's share. */
    ag_loader *a = ag_loader_new(ds, &(ag_loader_options){.batch_size = 1, .shuffle = true, .seed = 4, .num_replicas = 2, .rank = 1});
    ag_loader *b = ag_loader_new(ds, &(ag_loader_options){.batch_size = 1, .shuffle = true, .seed = 77, .num_replicas = 2, .rank = 1});
    ag_tensor *x, *y;
    ag_scope_begin();
    ag_loader_next(a, &x, &y);
    ag_loader_next(a, &x, &y);
    ag_state_dict *sd = ag_state_dict_new();
    ag_loader_state_dict(a, sd);
    bool same = ag_loader_load_state_dict(b, sd) == AG_OK;
    for (int k = 0; same && k < 3; k++) { /* a share of 5: 2 taken, 3 left */
        ag_tensor *ya, *yb;
        same = ag_loader_next(a, &x, &ya) == 1 && ag_loader_next(b, &x, &yb) == 1 && ag_item(ya) == ag_item(yb);
    }
    ok(same && ag_loader_next(a, &x, &y) == 0 && ag_loader_next(b, &x, &y) == 0,
       "a sharded loader resumed from its state dict hands out the rest of its share, then ends the epoch");
    ag_state_dict_free(sd);
    ag_scope_end();
    ag_loader_free(a);
    ag_loader_free(b);

    ok(!ag_loader_new(ds, &(ag_loader_options){.num_replicas = 2, .rank = 2}) && ag_last_status() == AG_ERR_ARG,
       "rank 2 of 2 replicas: %s", ag_last_error());
    ok(!ag_loader_new(ds, &(ag_loader_options){.num_replicas = -1}) && ag_last_status() == AG_ERR_ARG,
       "num_replicas -1: AG_ERR_ARG");
    ag_dataset_free(ds);
}

static void test_random_split(void) {
    ag_dataset *ds = numbered(150), *p[3], *q[3];
    ok(ag_random_split(ds, (double[]){0.7, 0.15, 0.15}, 3, 7, p) == AG_OK, "split 150 by fractions 0.7/0.15/0.15");
    ok(ag_dataset_len(p[0]) == 106 && ag_dataset_len(p[1]) == 22 && ag_dataset_len(p[2]) == 22,
       "lengths 106, 22, 22 (floors 105, 22, 22; the leftover sample to part 0, as PyTorch)");
    int seen[150] = {0};
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < ag_dataset_len(p[k]); i++) seen[ag_dataset_index(p[k], i)]++;
    bool once = true;
    for (int i = 0; i < 150; i++) once = once && seen[i] == 1;
    ok(once, "the parts are disjoint and cover every sample");
    ok(ag_random_split(ds, (double[]){0.7, 0.15, 0.15}, 3, 7, q) == AG_OK, "split again with the same seed");
    bool same = true;
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < ag_dataset_len(p[k]); i++) same = same && ag_dataset_index(p[k], i) == ag_dataset_index(q[k], i);
    ok(same, "the same seed gives the same split");
    for (int k = 0; k < 3; k++) ag_dataset_free(q[k]);
    ag_random_split(ds, (double[]){0.7, 0.15, 0.15}, 3, 8, q);
    same = true;
    for (int64_t i = 0; i < 22; i++) same = same && ag_dataset_index(p[2], i) == ag_dataset_index(q[2], i);
    ok(!same, "another seed gives another split");
    for (int k = 0; k < 3; k++) {
        ag_dataset_free(q[k]);
        ag_dataset_free(p[k]);
    }
    ok(ag_random_split(ds, (double[]){100, 30, 20}, 3, 1, p) == AG_OK && ag_dataset_len(p[0]) == 100 &&
           ag_dataset_len(p[1]) == 30 && ag_dataset_len(p[2]) == 20,
       "split by lengths 100/30/20");
    for (int k = 0; k < 3; k++) ag_dataset_free(p[k]);
    ok(ag_random_split(ds, (double[]){0.5, 0.5, 0}, 3, 1, p) == AG_OK && ag_dataset_len(p[2]) == 0, "an empty part is allowed");
    for (int k = 0; k < 3; k++) ag_dataset_free(p[k]);
    ag_clear_error();
    ok(ag_random_split(ds, (double[]){0.5, 0.6}, 2, 1, p) == AG_ERR_ARG && !p[0] && !p[1] &&
           strstr(ag_last_error(), "sum to 1.1"),
       "fractions that do not sum to 1: %s", ag_last_error());
    ok(ag_random_split(ds, (double[]){100, 30}, 2, 1, p) == AG_ERR_ARG && strstr(ag_last_error(), "150"),
       "lengths that do not sum to the length: %s", ag_last_error());
    ok(ag_random_split(ds, (double[]){100.5, 49.5}, 2, 1, p) == AG_ERR_ARG, "fractional lengths: %s", ag_last_error());
    ag_dataset_free(ds);
}

/* ---- transforms ------------------------------------------------------------------------- */
static void column_stats(const ag_tensor *x, int j, double *mean, double *sd, double *lo, double *hi) {
    int64_t n = ag_size(x, 0), d = ag_size(x, 1);
    double *v = values(x), s = 0, ss = 0;
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double a = v[i * d + j];
        s += a;
        *lo = fmin(*lo, a);
        *hi = fmax(*hi, a);
    }
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) ss += (v[i * d + j] - *mean) * (v[i * d + j] - *mean);
    *sd = sqrt(ss / (double)n);
}

static void test_transforms(void) {
    ag_csv *csv = ag_load_csv(DATA_DIR "/iris.csv",
                              &(ag_csv_options){.header = true, .has_labels = true, .label_column = -1, .dtype = AG_F64});
    if (!csv) {
        ok(0, "iris for transforms: %s", ag_last_error());
        return;
    }
    ag_dataset *ds = ag_tensor_dataset(ag_csv_features(csv), ag_csv_labels(csv)), *p[2];
    ag_csv_free(csv);
    ag_random_split(ds, (double[]){0.8, 0.2}, 2, 3, p);
    ag_scope_begin();
    ag_tensor *xtr, *xva, *mean, *sd;
    ag_dataset_tensors(p[0], &xtr, NULL);
    ag_dataset_tensors(p[1], &xva, NULL);
    ok(ag_zscore_fit(xtr, true, &mean, &sd) == AG_OK && same_shape(mean, AG_SHAPE(4)) && same_shape(sd, AG_SHAPE(4)),
       "z-score fit per feature on the training split: mean [4], std [4]");
    double m, s, lo, hi;
    column_stats(xtr, 2, &m, &s, &lo, &hi);
    close_to(ag_get(mean, (int64_t[]){2}), m, 1e-12, "fitted mean of petal length is the training split's");
    close_to(ag_get(sd, (int64_t[]){2}), s, 1e-12, "fitted std is the population std (ddof 0)");
    ag_tensor *ztr = ag_normalize(xtr, mean, sd), *zva = ag_normalize(xva, mean, sd);
    bool unit = ztr != NULL;
    for (int j = 0; unit && j < 4; j++) {
        column_stats(ztr, j, &m, &s, &lo, &hi);
        unit = fabs(m) < 1e-12 && fabs(s - 1) < 1e-12;
    }
    ok(unit, "normalized training features have mean 0 and std 1 per feature");
    column_stats(zva, 0, &m, &s, &lo, &hi);
    ok(zva && same_shape(zva, AG_SHAPE(30, 4)) && fabs(m) < 0.6 && s > 0.5 && s < 1.6,
       "the validation split, normalized with the training statistics, is near but not exactly standard (mean %.3f std %.3f)", m, s);
    ag_tensor *copy = ag_clone(xva);
    ok(ag_normalize_(copy, mean, sd) == copy && ag_get(copy, (int64_t[]){5, 3}) == ag_get(zva, (int64_t[]){5, 3}) &&
           ag_version(copy) > 0,
       "normalize_ in place gives the same values and bumps the version");
    /* float32 data with float64 statistics */
    ag_tensor *x32 = ag_to_dtype(xva, AG_F32), *z32 = ag_normalize(x32, mean, sd);
    ok(z32 && ag_dtype_of(z32) == AG_F32 && fabs(ag_get(z32, (int64_t[]){5, 3}) - ag_get(zva, (int64_t[]){5, 3})) < 1e-5,
       "statistics of another dtype are converted to the data's");

    /* min-max per feature */
    ag_tensor *flo, *fhi;
    ok(ag_minmax_fit(xtr, true, &flo, &fhi) == AG_OK, "min-max fit per feature");
    ag_tensor *u = ag_minmax_scale(xtr, flo, fhi, 0, 1), *pm = ag_minmax_scale(xtr, flo, fhi, -1, 1);
    bool unit01 = u && pm;
    for (int j = 0; unit01 && j < 4; j++) {
        column_stats(u, j, &m, &s, &lo, &hi);
        unit01 = lo == 0 && fabs(hi - 1) < 1e-15;
        column_stats(pm, j, &m, &s, &lo, &hi);
        unit01 = unit01 && lo == -1 && fabs(hi - 1) < 1e-15;
    }
    ok(unit01, "scaled training features span exactly [0, 1] and [-1, 1] per feature");
    ag_tensor *cst = ag_full(AG_SHAPE(3, 2), 4, AG_F64);
    ag_tensor *clo, *chi;
    ag_minmax_fit(cst, true, &clo, &chi);
    ag_tensor *cz = ag_minmax_scale(cst, clo, chi, -1, 1);
    ag_zscore_fit(cst, false, &mean, &sd);
    ag_tensor *cn = ag_normalize(cst, mean, sd);
    ok(cz && ag_get(cz, (int64_t[]){2, 1}) == -1 && ag_item(sd) == 1 && cn && ag_get(cn, (int64_t[]){1, 1}) == 0,
       "a constant feature maps to the low end (min-max) and gets std 1 (z-score)");
    ag_tensor *xs = ag_clone(xtr);
    ok(ag_minmax_scale_(xs, flo, fhi, 0, 1) == xs && ag_get(xs, (int64_t[]){7, 1}) == ag_get(u, (int64_t[]){7, 1}),
       "minmax_scale_ in place matches");

    /* images: pixel range to [0, 1] and [-1, 1], then one global z-score */
    double px[2 * 2 * 3] = {0, 255, 51, 127.5, 10, 20, 30, 40, 50, 60, 70, 80};
    ag_tensor *img = ag_from_data(px, AG_SHAPE(2, 2, 3), AG_F64);
    ag_tensor *img32 = ag_to_dtype(img, AG_F32);
    ag_tensor *a01 = ag_rescale(img32, 0, 255, 0, 1), *a11 = ag_rescale(img32, 0, 255, -1, 1);
    ok(a01 && ag_get(a01, (int64_t[]){0, 0, 0}) == 0 && ag_get(a01, (int64_t[]){0, 0, 1}) == 1 &&
           fabs(ag_get(a01, (int64_t[]){0, 0, 2}) - 0.2) < 1e-7,
       "rescale 0..255 -> [0, 1]: 0 -> 0, 255 -> 1 exactly, 51 -> 0.2");
    ok(a11 && ag_get(a11, (int64_t[]){0, 0, 0}) == -1 && ag_get(a11, (int64_t[]){0, 0, 1}) == 1 &&
           ag_get(a11, (int64_t[]){0, 1, 0}) == 0,
       "rescale 0..255 -> [-1, 1]: 0 -> -1, 255 -> 1, 127.5 -> 0");
    ag_tensor *g = ag_clone(img);
    ok(ag_rescale_(g, 0, 255, 0, 1) == g && ag_get(g, (int64_t[]){1, 1, 2}) == 80.0 / 255, "rescale_ in place");
    ag_tensor *view = ag_transpose(ag_clone(img), 1, 2);
    ok(ag_rescale_(view, 0, 255, 0, 1) == view && ag_get(view, (int64_t[]){1, 2, 1}) == 80.0 / 255,
       "rescale_ on a non-contiguous view");
    ok(ag_zscore_fit(img, false, &mean, &sd) == AG_OK && ag_ndim(mean) == 0 && ag_ndim(sd) == 0,
       "a global z-score fit gives 0-d mean and std");
    double sum = 0, sq = 0;
    for (int i = 0; i < 12; i++) sum += px[i];
    for (int i = 0; i < 12; i++) sq += (px[i] - sum / 12) * (px[i] - sum / 12);
    close_to(ag_item(mean), sum / 12, 1e-12, "global mean over every pixel");
    close_to(ag_item(sd), sqrt(sq / 12), 1e-12, "global std over every pixel");
    ag_tensor *zi = ag_normalize(img, mean, sd);
    ag_tensor *zm, *zs;
    ag_zscore_fit(zi, false, &zm, &zs);
    ok(zi && fabs(ag_item(zm)) < 1e-12 && fabs(ag_item(zs) - 1) < 1e-12, "after it the images have global mean 0, std 1");
    ag_tensor *pp, *ps;
    ok(ag_zscore_fit(img, true, &pp, &ps) == AG_OK && same_shape(pp, AG_SHAPE(2, 3)) &&
           ag_get(pp, (int64_t[]){0, 1}) == (255.0 + 40) / 2,
       "a per-feature fit on images gives per-pixel statistics [2, 3]");

    /* errors */
    ag_clear_error();
    ok(ag_zscore_fit(ag_zeros(AG_SHAPE(3), AG_I64), true, &mean, &sd) == AG_ERR_DTYPE, "int64 data: %s", ag_last_error());
    ok(ag_zscore_fit(ag_zeros(AG_SHAPE(0, 3), AG_F32), true, &mean, &sd) == AG_ERR_VALUE, "no samples: %s", ag_last_error());
    ok(!ag_rescale(img, 1, 1, 0, 1) && ag_last_status() == AG_ERR_ARG, "an empty input range: %s", ag_last_error());
    ok(!ag_normalize(img, ag_zeros(AG_SHAPE(5), AG_F64), sd), "statistics that do not broadcast: %s", ag_last_error());
    ag_scope_end();
    ag_dataset_free(p[0]);
    ag_dataset_free(p[1]);
    ag_dataset_free(ds);
}

/* ---- uint8 data: images kept as bytes, converted batch by batch (torchvision's way) ---------- */
static void test_uint8_data(void) {
    ag_scope_begin();
    /* IDX: ubyte files load as the bytes themselves, and save back byte for byte */
    unsigned char img[16 + 4 * 2 * 3];
    static const unsigned char ih[16] = {0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 3};
    memcpy(img, ih, 16);
    for (int i = 0; i < 24; i++) img[16 + i] = (unsigned char)(i * 37 % 256);
    write_gzip(path_of("u8-images.gz"), img, sizeof img, "u8-images");
    ag_tensor *x = ag_load_idx(path_of("u8-images.gz"), AG_U8);
    bool same = same_shape(x, AG_SHAPE(4, 2, 3)) && ag_dtype_of(x) == AG_U8 && memcmp(ag_data(x), img + 16, 24) == 0;
    ok(same, "a ubyte IDX file loads as uint8 [4, 2, 3] holding its bytes%s%s", same ? "" : ": ", same ? "" : ag_last_error());
    /* two gzip members: the trailer's size is only the second's, so the load cannot go
     * straight into the tensor and takes the general path, with the same result */
    write_gzip(path_of("u8-a.gz"), img, 10, "a");
    write_gzip(path_of("u8-b.gz"), img + 10, sizeof img - 10, "b");
    size_t na = 0, nb = 0;
    unsigned char *ga = slurp(path_of("u8-a.gz"), &na), *gb = slurp(path_of("u8-b.gz"), &nb);
    unsigned char *both = ga && gb ? malloc(na + nb) : NULL;
    if (both) {
        memcpy(both, ga, na);
        memcpy(both + na, gb, nb);
        write_file(path_of("u8-two.gz"), both, na + nb);
    }
    ag_tensor *x2 = ag_load_idx(path_of("u8-two.gz"), AG_U8);
    ok(x2 && ag_is_contiguous(x2) && same_shape(x2, AG_SHAPE(4, 2, 3)) && memcmp(ag_data(x2), img + 16, 24) == 0,
       "a two-member gzip file loads the same bytes");
    free(ga), free(gb), free(both);
    ok(ag_save_idx(x, path_of("u8.idx"), AG_IDX_U8, false) == AG_OK, "save_idx of a uint8 tensor as ubyte");
    size_t n = 0;
    unsigned char *raw = slurp(path_of("u8.idx"), &n);
    ok(raw && n == sizeof img && memcmp(raw, img, n) == 0, "the file is the original bytes again");
    free(raw);
    ag_tensor *xi = ag_load_idx(path_of("u8.idx"), AG_I64);
    ok(xi && ag_get(xi, (int64_t[]){3, 1, 2}) == ag_get(x, (int64_t[]){3, 1, 2}), "the same file reads as int64 too");
    ok(ag_save_idx(x, path_of("u8f.idx"), AG_IDX_F32, true) == AG_OK &&
           ag_get(ag_load_idx(path_of("u8f.idx"), AG_F32), (int64_t[]){0, 1, 0}) == 111,
       "uint8 saves as float elements too (37 * 3 = 111)");
    /* other element types would not survive as uint8: refused */
    ag_save_idx(ag_from_data((double[]){-3, 4}, AG_SHAPE(2), AG_F64), path_of("sb.idx"), AG_IDX_I8, false);
    ag_save_idx(ag_from_data((double[]){1.5, 4}, AG_SHAPE(2), AG_F64), path_of("fl.idx"), AG_IDX_F32, false);
    ag_clear_error();
    ok(!ag_load_idx(path_of("sb.idx"), AG_U8) && ag_last_status() == AG_ERR_DTYPE &&
           strstr(ag_last_error(), "cannot load sbyte elements as uint8 (only ubyte files; use int64, float32 or float64)"),
       "an sbyte file does not load as uint8: %s", ag_last_error());
    ok(!ag_load_idx(path_of("fl.idx"), AG_U8) && ag_last_status() == AG_ERR_DTYPE && strstr(ag_last_error(), "float elements"),
       "nor a float file: %s", ag_last_error());

    /* a dataset of bytes: loader batches are uint8, converted per batch */
    ag_tensor *lab = ag_arange(0, 4, 1, AG_I64);
    ag_dataset *ds = ag_tensor_dataset(x, lab);
    ag_loader *l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 3, .shuffle = true, .seed = 5});
    ag_tensor *bx, *by;
    int batches = 0, good = 0;
    while (ag_loader_next(l, &bx, &by) > 0) {
        batches++;
        bool fine = ag_dtype_of(bx) == AG_U8 && ag_ndim(bx) == 3 && ag_size(bx, 1) == 2 && ag_size(bx, 2) == 3;
        for (int64_t i = 0; fine && i < ag_size(bx, 0); i++)
            fine = memcmp((const uint8_t *)ag_data(bx) + 6 * i, img + 16 + 6 * (int64_t)ag_get(by, &i), 6) == 0;
        ag_tensor *f = fine ? ag_rescale(bx, 0, 255, -1, 1) : NULL;
        fine = f && ag_dtype_of(f) == AG_F32 && ag_size(f, 0) == ag_size(bx, 0) &&
               fabs(ag_get(f, (int64_t[]){0, 0, 0}) - (ag_get(bx, (int64_t[]){0, 0, 0}) / 127.5 - 1)) < 1e-6;
        good += fine;
    }
    ok(batches == 2 && good == 2, "shuffled loader batches of uint8 rows match their labels' images; rescale gives float32");
    ag_loader_free(l);
    ag_dataset_free(ds);

    /* transforms: float32 results and statistics, accumulated in double */
    uint8_t px[6] = {0, 51, 255, 10, 20, 30};
    ag_tensor *u = ag_from_data(px, AG_SHAPE(2, 3), AG_U8), *mean, *sd, *lo, *hi;
    ag_tensor *r01 = ag_rescale(u, 0, 255, 0, 1);
    ok(r01 && ag_dtype_of(r01) == AG_F32 && ag_get(r01, (int64_t[]){0, 2}) == 1 && ag_get(r01, (int64_t[]){0, 0}) == 0 &&
           fabs(ag_get(r01, (int64_t[]){0, 1}) - 0.2) < 1e-7 && ag_get(u, (int64_t[]){0, 1}) == 51,
       "rescale of uint8 returns float32 (ToTensor): 0 -> 0, 51 -> 0.2, 255 -> 1; the bytes stay");
    ag_tensor *r11 = ag_rescale(ag_t(u), 0, 255, -1, 1), *ref = ag_rescale(ag_t(ag_to_dtype(u, AG_F32)), 0, 255, -1, 1);
    bool equal = r11 && ref && same_shape(r11, AG_SHAPE(3, 2));
    for (int i = 0; equal && i < 6; i++) equal = ag_get(r11, (int64_t[]){i / 2, i % 2}) == ag_get(ref, (int64_t[]){i / 2, i % 2});
    ok(equal, "rescale of a transposed uint8 view gives exactly what rescale of its float32 copy gives");
    ok(ag_zscore_fit(u, false, &mean, &sd) == AG_OK && ag_dtype_of(mean) == AG_F32 && ag_ndim(mean) == 0, "zscore_fit of uint8: float32 0-d");
    double m = (0 + 51 + 255 + 10 + 20 + 30) / 6.0, v = 0;
    for (int i = 0; i < 6; i++) v += (px[i] - m) * (px[i] - m);
    close_to(ag_item(mean), m, 1e-4, "its mean is that of the bytes");
    close_to(ag_item(sd), sqrt(v / 6), 1e-4, "its std is that of the bytes");
    ag_tensor *z = ag_normalize(u, mean, sd);
    ok(z && ag_dtype_of(z) == AG_F32 && fabs(ag_get(z, (int64_t[]){1, 0}) - (10 - m) / sqrt(v / 6)) < 1e-5,
       "normalize of uint8 returns float32 (x - mean) / std");
    ok(ag_zscore_fit(u, true, &mean, &sd) == AG_OK && same_shape(mean, AG_SHAPE(3)) && ag_get(mean, (int64_t[]){2}) == 142.5,
       "a per-feature fit on uint8: mean [3]");
    ok(ag_minmax_fit(u, true, &lo, &hi) == AG_OK && ag_dtype_of(lo) == AG_F32 && ag_get(lo, (int64_t[]){1}) == 20 &&
           ag_get(hi, (int64_t[]){2}) == 255,
       "minmax_fit of uint8 per feature");
    ag_tensor *mm = ag_minmax_scale(u, lo, hi, -1, 1);
    ok(mm && ag_dtype_of(mm) == AG_F32 && ag_get(mm, (int64_t[]){0, 2}) == 1 && ag_get(mm, (int64_t[]){1, 2}) == -1,
       "minmax_scale of uint8 returns float32");
    ag_clear_error();
    const char *inplace = "uint8 data cannot hold the float result in place; use the out-of-place version, which returns float32";
    ok(!ag_rescale_(u, 0, 255, 0, 1) && ag_last_status() == AG_ERR_DTYPE && strstr(ag_last_error(), inplace),
       "rescale_ of uint8 refuses: %s", ag_last_error());
    ok(!ag_normalize_(u, mean, sd) && ag_last_status() == AG_ERR_DTYPE && strstr(ag_last_error(), "normalize_: uint8"),
       "normalize_ of uint8 refuses: %s", ag_last_error());
    ok(!ag_minmax_scale_(u, lo, hi, 0, 1) && ag_last_status() == AG_ERR_DTYPE, "minmax_scale_ of uint8 refuses: %s",
       ag_last_error());
    ok(ag_get(u, (int64_t[]){0, 1}) == 51, "the refused calls left the bytes alone");
    ok(ag_zscore_fit(ag_zeros(AG_SHAPE(2), AG_BOOL), false, &mean, &sd) == AG_ERR_DTYPE &&
           strstr(ag_last_error(), "needs float32, float64 or uint8 data, got bool"),
       "bool data is still refused: %s", ag_last_error());
    ag_scope_end();
}

/* ---- Fashion-MNIST, when scripts/fetch_fashion_mnist.sh has been run ----------------------- */
static void test_fashion_mnist(void) {
    const char *train = DATA_DIR "/fashion-mnist/train-images-idx3-ubyte.gz";
    if (access(train, R_OK) != 0) {
        diag("datasets/fashion-mnist/ absent (run scripts/fetch_fashion_mnist.sh): its checks are left out");
        return;
    }
    ag_scope_begin();
    ag_tensor *x = ag_load_idx(train, AG_F32);
    ag_tensor *y = ag_load_idx(DATA_DIR "/fashion-mnist/train-labels-idx1-ubyte.gz", AG_I64);
    ag_tensor *xt = ag_load_idx(DATA_DIR "/fashion-mnist/t10k-images-idx3-ubyte.gz", AG_F32);
    ag_tensor *yt = ag_load_idx(DATA_DIR "/fashion-mnist/t10k-labels-idx1-ubyte.gz", AG_I64);
    ok(same_shape(x, AG_SHAPE(60000, 28, 28)) && same_shape(y, AG_SHAPE(60000)) && same_shape(xt, AG_SHAPE(10000, 28, 28)) &&
           same_shape(yt, AG_SHAPE(10000)),
       "Fashion-MNIST: 60000 + 10000 images of 28 x 28 with labels");
    int64_t count[10] = {0}, tcount[10] = {0};
    bool range = y && yt;
    for (int64_t i = 0; range && i < 60000; i++) {
        int64_t c = ((const int64_t *)ag_data(y))[i];
        range = c >= 0 && c < 10;
        if (range) count[c]++;
    }
    for (int64_t i = 0; range && i < 10000; i++) {
        int64_t c = ((const int64_t *)ag_data(yt))[i];
        range = c >= 0 && c < 10;
        if (range) tcount[c]++;
    }
    bool balanced = range;
    for (int c = 0; c < 10; c++) balanced = balanced && count[c] == 6000 && tcount[c] == 1000;
    ok(balanced, "6000 training and 1000 test images per class");
    ag_tensor *lo, *hi;
    ok(x && ag_minmax_fit(x, false, &lo, &hi) == AG_OK && ag_item(lo) == 0 && ag_item(hi) == 255, "pixels span 0 .. 255");
    ag_tensor *mean, *sd, *mean8, *sd8;
    ag_zscore_fit(x, false, &mean, &sd);
    ag_tensor *x8 = ag_load_idx(train, AG_U8);
    ok(same_shape(x8, AG_SHAPE(60000, 28, 28)) && ag_dtype_of(x8) == AG_U8 &&
           ag_get(x8, (int64_t[]){59999, 14, 14}) == ag_get(x, (int64_t[]){59999, 14, 14}),
       "the images load as uint8 too (47 MB instead of 188 MB), with the same values");
    bool fitted = x8 && ag_zscore_fit(x8, false, &mean8, &sd8) == AG_OK;
    ok(fitted && fabs(ag_item(mean8) - ag_item(mean)) < 1e-3 && fabs(ag_item(sd8) - ag_item(sd)) < 1e-3,
       "z-score statistics of the bytes equal those of the float32 copy (mean %.4f, std %.4f) %s", fitted ? ag_item(mean8) : 0.0,
       fitted ? ag_item(sd8) : 0.0, fitted ? "" : ag_last_error());
    ag_scope_end();
}

/* ---- the readers under failing allocations ------------------------------------------------ */

/* Reads a gzip IDX file and the Iris CSV, splits, and draws a shuffled batch. */
static ag_status pipeline(void) {
    ag_status st = ag_scope_begin();
    if (st) return st;
    ag_tensor *img = ag_load_idx(path_of("train-images-idx3-ubyte.gz"), AG_F32);
    ag_tensor *img8 = img ? ag_load_idx(path_of("train-images-idx3-ubyte.gz"), AG_U8) : NULL;
    if (img8 && !ag_rescale(img8, 0, 255, 0, 1)) img8 = NULL;
    ag_csv *csv = img8 ? ag_load_csv(DATA_DIR "/iris.csv",
                                    &(ag_csv_options){.header = true, .has_labels = true, .label_column = -1})
                      : NULL;
    ag_dataset *ds = csv ? ag_tensor_dataset(ag_csv_features(csv), ag_csv_labels(csv)) : NULL, *p[2] = {NULL, NULL};
    ag_loader *l = NULL;
    ag_tensor *x = NULL, *y, *mean, *sd;
    if (ds && ag_random_split(ds, (double[]){0.8, 0.2}, 2, 1, p) == AG_OK &&
        (l = ag_loader_new(p[0], &(ag_loader_options){.batch_size = 32, .shuffle = true})) &&
        ag_loader_next(l, &x, &y) == 1 && ag_zscore_fit(x, true, &mean, &sd) == AG_OK && ag_normalize(x, mean, sd))
        st = AG_OK;
    else
        st = ag_last_status();
    ag_loader_free(l);
    ag_dataset_free(p[0]);
    ag_dataset_free(p[1]);
    ag_dataset_free(ds);
    ag_csv_free(csv);
    ag_scope_end();
    return st;
}

static void test_alloc_failures(void) {
    ag_set_allocator(failing_alloc, NULL);
    fail_at = -1;
    alloc_calls = 0;
    ok(pipeline() == AG_OK, "the data pipeline runs with a counting allocator");
    long needed = alloc_calls, bad = 0;
    diag("it makes %ld allocations", needed);
    for (long k = 1; k <= needed; k++) {
        fail_at = k;
        alloc_calls = 0;
        long blocks = live_blocks;
        ag_clear_error();
        ag_status st = pipeline();
        if (st != AG_ERR_NOMEM || ag_live_tensors() != 0 || live_blocks != blocks) {
            if (bad++ < 5)
                diag("failing allocation %ld: status %d (%s), %ld tensors, %ld blocks left", k, st, ag_last_error(),
                     ag_live_tensors(), live_blocks - blocks);
        }
    }
    ok(bad == 0, "each of the %ld allocations failing gives AG_ERR_NOMEM and leaks nothing", needed);
    ag_set_allocator(NULL, NULL);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_idx_round_trip();
    test_idx_official_layout();
    test_idx_errors();
    test_idx_gzip_bounded();
    test_idx_mode();
    test_iris();
    test_truth_tables();
    test_csv_dialects();
    test_csv_errors();
    test_dataset();
    test_loader();
    test_loader_shards();
    test_random_split();
    test_transforms();
    test_uint8_data();
    test_fashion_mnist();
    test_alloc_failures();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) diag("could not remove %s", dir);
    ok(ag_live_tensors() == 0, "nothing leaked (%ld live tensors)", ag_live_tensors());
    return tap_done();
}

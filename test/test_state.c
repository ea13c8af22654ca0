/*
 * State dicts and safetensors files: round trip, a file laid out by PyTorch's
 * safetensors, atomic saving (modes, durability, stale temporary files),
 * names a file cannot hold, and corrupt or hostile files failing cleanly and
 * within bounded memory.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "io/file.h"
#include "tap.h"
#include "failing_alloc.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

static char dir[] = "/tmp/agrad-state-XXXXXX";

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

/* A file of an 8-byte length, the header text, and `data` bytes of zeros. */
static void write_st(const char *path, const char *header, uint64_t claimed_len, size_t data) {
    FILE *f = fopen(path, "wb");
    unsigned char n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (unsigned char)(claimed_len >> (8 * i));
    fwrite(n8, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data; i++) fputc(0, f);
    fclose(f);
}

static void test_round_trip(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ag_state_dict *sd = ag_state_dict_new();
    ag_scope_begin();
    ag_tensor *w = ag_randn(AG_SHAPE(3, 4), AG_F32);
    ag_tensor *wt = ag_transpose(ag_randn(AG_SHAPE(2, 5), AG_F64), 0, 1); /* non-contiguous */
    double idx[3] = {0, 7, -2};
    ag_tensor *ix = ag_to_dtype(ag_from_data(idx, AG_SHAPE(3), AG_F64), AG_I64);
    ag_state_dict_set(sd, "layer.weight", w);
    ag_state_dict_set(sd, "t", wt);
    ag_state_dict_set(sd, "idx", ix);
    ag_tensor *px = ag_from_data((uint8_t[]){0, 17, 128, 255, 3, 9}, AG_SHAPE(2, 3), AG_U8);
    ag_state_dict_set(sd, "pixels", ag_t(px)); /* uint8, non-contiguous */
    ag_state_dict_set_scalar(sd, "step", 42);
    ok(ag_save_safetensors(sd, path) == AG_OK, "save");
    ag_state_dict *back = ag_load_safetensors(path);
    ok(back && ag_state_dict_size(back) == 5, "load finds 5 entries");
    bool same = back != NULL;
    for (int i = 0; same && i < ag_state_dict_size(sd); i++) {
        ag_tensor *a = ag_state_dict_tensor(sd, i), *b = ag_state_dict_get(back, ag_state_dict_name(sd, i));
        same = b && ag_dtype_of(a) == ag_dtype_of(b) && ag_ndim(a) == ag_ndim(b);
        for (int64_t k = 0; same && k < ag_numel(a); k++) {
            int64_t at[AG_MAX_DIMS], r = k;
            for (int d = ag_ndim(a) - 1; d >= 0; d--) {
                at[d] = r % ag_size(a, d);
                r /= ag_size(a, d);
            }
            same = ag_get(a, at) == ag_get(b, at);
        }
    }
    ok(same, "round trip preserves names, dtypes, shapes and every value bit for bit");
    ok(ag_state_dict_get_scalar(back, "step") == 42, "scalars round trip");
    ag_tensor *pb = ag_state_dict_get(back, "pixels");
    ok(pb && ag_dtype_of(pb) == AG_U8 && ag_size(pb, 0) == 3 && ag_get(pb, (int64_t[]){0, 1}) == 255,
       "a uint8 tensor round trips as uint8");
    FILE *sf = fopen(path, "rb");
    char head[512] = {0};
    if (sf) {
        fseek(sf, 8, SEEK_SET);
        if (fread(head, 1, sizeof head - 1, sf) == 0) head[0] = 0;
        fclose(sf);
    }
    ok(strstr(head, "\"pixels\":{\"dtype\":\"U8\"") != NULL, "its safetensors dtype tag is \"U8\", as torch.uint8's");
    ok(ag_state_dict_get(back, "nope") == NULL && strstr(ag_last_error(), "nope"), "missing entry: %s", ag_last_error());
    ag_scope_end();
    ag_state_dict_free(back);

    /* atomic: no temporary file is left behind, and a failed save leaves the old file intact */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp > /dev/null", dir);
    ok(system(cmd) != 0, "no temporary file left after saving");
    char bad[300];
    snprintf(bad, sizeof bad, "%s/missing-dir/x.safetensors", dir);
    ok(ag_save_safetensors(sd, bad) == AG_ERR_IO && strstr(ag_last_error(), "missing-dir"), "unwritable path: %s",
       ag_last_error());
    ag_state_dict_free(sd);
}

static void test_pytorch_file(void) {
    ag_state_dict *sd = ag_load_safetensors(FIXTURES "/torch_state.safetensors");
    ok(sd && ag_state_dict_size(sd) == 7, "a file written in PyTorch's safetensors layout loads (%s)",
       sd ? "7 entries" : ag_last_error());
    if (!sd) return;
    ag_tensor *w = ag_state_dict_get(sd, "0.weight");
    ok(w && ag_ndim(w) == 2 && ag_size(w, 0) == 2 && ag_size(w, 1) == 3 && ag_dtype_of(w) == AG_F32, "0.weight [2, 3] F32");
    close_to(ag_get(w, (int64_t[]){1, 2}), 0.15482072532176971, 1e-7, "0.weight[1][2] as PyTorch wrote it");
    close_to(ag_get(ag_state_dict_get(sd, "1.running_var"), (int64_t[]){0}), 0.9224566221237183, 1e-7, "1.running_var[0]");
    ag_tensor *nbt = ag_state_dict_get(sd, "1.num_batches_tracked");
    ok(nbt && ag_dtype_of(nbt) == AG_I64 && ag_ndim(nbt) == 0 && ag_item(nbt) == 1, "num_batches_tracked is a 0-d int64");
    ag_state_dict_free(sd);
}

static void expect_format_error(const char *what, const char *path, const char *needle) {
    ag_clear_error();
    ag_state_dict *sd = ag_load_safetensors(path);
    ok(!sd && ag_last_status() == AG_ERR_FORMAT && strstr(ag_last_error(), needle), "%s: %s", what, ag_last_error());
    ag_state_dict_free(sd);
}

static void test_corrupt(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/bad.safetensors", dir);
    write_file(p, "abc", 3);
    expect_format_error("a 3-byte file", p, "shorter");
    write_st(p, "{}", 1000, 0);
    expect_format_error("a header length beyond the file", p, "exceeds");
    write_st(p, "{\"a\": [}", 8, 0);
    expect_format_error("broken JSON", p, "JSON");
    const char *h1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    write_st(p, h1, strlen(h1), 4);
    expect_format_error("offsets past the end (truncated data)", p, "outside");
    const char *h2 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
    write_st(p, h2, strlen(h2), 8);
    expect_format_error("size not matching the shape", p, "do not match");
    const char *h3 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    write_st(p, h3, strlen(h3), 12);
    expect_format_error("overlapping tensors", p, "overlap");
    const char *h4 = "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    write_st(p, h4, strlen(h4), 4);
    expect_format_error("an unsupported dtype", p, "unsupported dtype");
    const char *h5 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}";
    write_st(p, h5, strlen(h5), 8);
    expect_format_error("a negative size", p, "negative");
    const char *h6 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,8]}}";
    write_st(p, h6, strlen(h6), 8);
    expect_format_error("a shape whose size overflows", p, "impossibly large");
    const char *h6b = "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,9223372036854775808],\"data_offsets\":[0,0]}}";
    write_st(p, h6b, strlen(h6b), 0);
    expect_format_error("a size of 2^63 (beyond int64) beside a zero", p, "impossibly large");
    const char *h7 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    write_st(p, h7, strlen(h7), 8);
    expect_format_error("duplicate names", p, "two entries have this name");
    const char *h8 = "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    write_st(p, h8, strlen(h8), 4);
    expect_format_error("an empty tensor name (found by fuzz_safetensors)", p, "empty name");
    ag_clear_error();
    ok(ag_load_safetensors("/nonexistent/file.safetensors") == NULL && ag_last_status() == AG_ERR_IO &&
           strstr(ag_last_error(), "/nonexistent/file.safetensors"),
       "a missing file: %s", ag_last_error());
}

/* ---- names a file cannot hold; what the format allows ---------------------------------------------- */
static void test_names(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/names.safetensors", dir);
    ag_state_dict *sd = ag_state_dict_new();
    ag_tensor *t = ag_zeros(AG_SHAPE(2), AG_F32);
    ag_state_dict_set(sd, "__metadata__", t);
    ag_clear_error();
    ok(ag_save_safetensors(sd, p) == AG_ERR_FORMAT && strstr(ag_last_error(), "\"__metadata__\"") &&
           access(p, F_OK) != 0,
       "a tensor named __metadata__ is refused on save, nothing written: %s", ag_last_error());
    ag_state_dict_free(sd);

    sd = ag_state_dict_new();
    ag_state_dict_set(sd, "ok", t);
    ag_state_dict_set(sd, "caf\xc3\xa9\xff", t); /* valid é, then a byte no UTF-8 has */
    ag_clear_error();
    ok(ag_save_safetensors(sd, p) == AG_ERR_FORMAT && strstr(ag_last_error(), "not valid UTF-8 (byte 0xff at offset 5") &&
           access(p, F_OK) != 0,
       "a name that is not UTF-8 is refused on save: %s", ag_last_error());
    ag_state_dict_free(sd);
    const char *bad_utf8[] = {"\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\xe2\x82"};
    int refused = 0;
    for (int i = 0; i < 4; i++) {
        sd = ag_state_dict_new();
        ag_state_dict_set(sd, bad_utf8[i], t);
        refused += ag_save_safetensors(sd, p) == AG_ERR_FORMAT;
        ag_state_dict_free(sd);
    }
    ok(refused == 4, "overlong forms, surrogates, code points past U+10FFFF and cut sequences are refused (%d of 4)",
       refused);

    /* A long name (5000 bytes) and a multi-byte one round trip whole. */
    char *longname = malloc(5001);
    for (int i = 0; i < 5000; i++) longname[i] = (char)('a' + i % 26);
    longname[5000] = '\0';
    sd = ag_state_dict_new();
    ag_state_dict_set(sd, longname, t);
    ag_state_dict_set(sd, "\xce\xbb.weight", t);
    ok(ag_save_safetensors(sd, p) == AG_OK, "save a 5000-byte name: %s", ag_last_error());
    ag_state_dict *back = ag_load_safetensors(p);
    ok(back && ag_state_dict_size(back) == 2 && strcmp(ag_state_dict_name(back, 0), longname) == 0 &&
           ag_state_dict_get(back, "\xce\xbb.weight"),
       "it loads back untruncated, beside a UTF-8 name");
    ag_state_dict_free(back);
    ag_state_dict_free(sd);
    free(longname);
    ag_release(t);

    /* Empty tensors: a [0, 0] at the same offset as a tensor's data, one at the very end. */
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"e\":{\"dtype\":\"F32\",\"shape\":[0,0],\"data_offsets\":[0,0]},"
                    "\"m\":{\"dtype\":\"I64\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
                    "\"z\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[8,8]}}";
    write_st(p, h, strlen(h), 8);
    ag_clear_error();
    back = ag_load_safetensors(p);
    ok(back && ag_state_dict_size(back) == 4 && ag_numel(ag_state_dict_get(back, "e")) == 0 &&
           ag_size(ag_state_dict_get(back, "m"), 0) == 3,
       "empty tensors overlap nothing, wherever they point: %s", back ? "4 entries" : ag_last_error());
    ag_state_dict_free(back);
}

/* ---- the header's JSON: what the reader accepts and refuses ---------------------------------------- */
static void test_header_json(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/json.safetensors", dir);
    /* White space, fields in any order, metadata and unknown fields skipped, escapes decoded. */
    const char *h = " {\n  \"__metadata__\" : {\"format\": \"pt\", \"nested\": [1, -2.5e3, true, null, {\"k\": []}]},\n"
                    "  \"q\\\"b\\\\\\u00e9\\ud83d\\ude00\" : {\"shape\": [1], \"extra\": {\"x\": [0]}, "
                    "\"data_offsets\": [0, 4], \"dtype\": \"F32\"}\t}\r\n";
    write_st(p, h, strlen(h), 4);
    ag_clear_error();
    ag_state_dict *sd = ag_load_safetensors(p);
    ok(sd && ag_state_dict_size(sd) == 1 && strcmp(ag_state_dict_name(sd, 0), "q\"b\\\xc3\xa9\xf0\x9f\x98\x80") == 0,
       "white space, field order, metadata, unknown fields and escapes: %s", sd ? ag_state_dict_name(sd, 0) : ag_last_error());
    ag_state_dict_free(sd);

    /* Names with quotes, backslashes and control characters round trip. */
    sd = ag_state_dict_new();
    ag_tensor *t = ag_ones(AG_SHAPE(1), AG_F64);
    const char *odd = "a\"b\\c\n\x01\x1f/\x7f";
    ag_state_dict_set(sd, odd, t);
    ag_release(t);
    ag_state_dict *back = ag_save_safetensors(sd, p) == AG_OK ? ag_load_safetensors(p) : NULL;
    ok(back && ag_state_dict_size(back) == 1 && strcmp(ag_state_dict_name(back, 0), odd) == 0,
       "a name with quotes, backslashes and control characters round trips");
    ag_state_dict_free(back);
    ag_state_dict_free(sd);

    static const struct {
        const char *header, *needle, *what;
    } bad[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", "text after the header's object at byte 55", "text after the object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", "'}' expected at byte 53", "a missing brace"},
        {"{\"a", "unterminated string", "an unterminated name"},
        {"{\"a\\u0000b\":{}}", "\\u0000 in a string", "a NUL in a name"},
        {"{\"\\ud800x\":{}}", "lone surrogate", "a lone surrogate"},
        {"{\"a\\q\":{}}", "invalid escape", "an unknown escape"},
        {"{\"a\tb\":{}}", "control character", "a raw tab in a name"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", "negative or non-integer", "a fractional size"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", "negative or non-integer", "a size with an exponent"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", "two data_offsets", "three offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-0,4]}}", "outside the data section", "a negative offset"},
        {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "names a field twice", "a field twice"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "needs dtype", "no dtype"},
        {"{\"a\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,4]}}", "needs dtype", "a dtype that is not a string"},
        {"{\"a\":[]}", "'{' expected", "an entry that is not an object"},
        {"[]", "'{' expected at byte 0", "a header that is not an object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":tru}}", "value expected", "a broken literal"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":01}}", "'}' expected at byte 58", "a leading zero"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", "string expected", "a trailing comma"},
    };
    int n = (int)(sizeof bad / sizeof bad[0]);
    for (int i = 0; i < n; i++) {
        write_st(p, bad[i].header, strlen(bad[i].header), 4);
        expect_format_error(bad[i].what, p, bad[i].needle);
    }
    /* Nesting 200 deep in the metadata stops at 64, without recursing further. */
    char deep[600];
    size_t len = (size_t)snprintf(deep, sizeof deep, "{\"__metadata__\":");
    for (int i = 0; i < 200; i++) deep[len++] = '[';
    for (int i = 0; i < 200; i++) deep[len++] = ']';
    deep[len++] = '}';
    deep[len] = '\0';
    write_st(p, deep, len, 0);
    expect_format_error("200 nested arrays", p, "nested too deeply");
}

/* ---- the data section: coverage, BOOL bytes -------------------------------------------------------- */
static void test_data_section(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/data.safetensors", dir);
    const char *gap = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
    write_st(p, gap, strlen(gap), 12);
    expect_format_error("a hole between two tensors", p, "bytes 4..8 of the data section belong to no tensor");
    const char *tail = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    write_st(p, tail, strlen(tail), 9);
    expect_format_error("bytes after the last tensor", p, "bytes 4..9 of the data section belong to no tensor (after the last)");
    const char *same = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    write_st(p, same, strlen(same), 4);
    expect_format_error("two tensors on the same bytes", p, "overlap");

    /* BOOL holds 0 or 1. */
    const char *hb = "{\"flags\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}";
    FILE *f = fopen(p, "wb");
    unsigned char n8[8] = {(unsigned char)strlen(hb)};
    fwrite(n8, 1, 8, f);
    fwrite(hb, 1, strlen(hb), f);
    fwrite("\x01\x00\x02", 1, 3, f);
    fclose(f);
    expect_format_error("a BOOL byte of 2", p, "tensor \"flags\": BOOL element 2 is the byte 2 (a BOOL is 0 or 1)");

    /* A name that is not UTF-8 in a file. */
    const char *hu = "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}";
    write_st(p, hu, strlen(hu), 0);
    expect_format_error("a name in the file that is not UTF-8", p, "a string is not valid UTF-8 at byte 3");
}

/* ---- hostile headers: memory stays bounded; many entries load ----------------------------------------- */
static void test_bounded(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/hostile.safetensors", dir);
    /* 3000 entries of 1 MiB each, all pointing at the same 1 MiB of data. */
    enum { N = 3000, MIB = 1 << 20 };
    size_t cap = (size_t)N * 96 + 16;
    char *h = malloc(cap);
    size_t len = (size_t)snprintf(h, cap, "{");
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(h + len, cap - len, "%s\"t%d\":{\"dtype\":\"U8\",\"shape\":[%d],\"data_offsets\":[0,%d]}",
                                i ? "," : "", i, MIB, MIB);
    len += (size_t)snprintf(h + len, cap - len, "}");
    write_st(p, h, len, MIB);
    free(h);
    ag_set_allocator(peak_alloc, NULL);
    live_bytes = peak_bytes = 0;
    cap_bytes = 64u << 20; /* the old loader allocated 3000 MiB before it saw the overlap */
    ag_clear_error();
    ag_state_dict *sd = ag_load_safetensors(p);
    cap_bytes = SIZE_MAX;
    ag_set_allocator(NULL, NULL);
    ok(!sd && ag_last_status() == AG_ERR_FORMAT && strstr(ag_last_error(), "overlap"),
       "3000 entries on the same 1 MiB: refused as overlapping: %s", ag_last_error());
    ok(peak_bytes < 8u << 20, "before allocating any tensor (peak %zu KiB for a %zu KiB header)", peak_bytes >> 10,
       len >> 10);
    ag_state_dict_free(sd);

    /* Many empty entries load, each found by name (the dict's index grows as it fills). */
    enum { M = 50000 };
    cap = (size_t)M * 80 + 16;
    h = malloc(cap);
    len = (size_t)snprintf(h, cap, "{");
    for (int i = 0; i < M; i++)
        len += (size_t)snprintf(h + len, cap - len, "%s\"layer.%d.bias\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}",
                                i ? "," : "", i);
    len += (size_t)snprintf(h + len, cap - len, "}");
    write_st(p, h, len, 0);
    free(h);
    sd = ag_load_safetensors(p);
    int found = 0;
    char name[64];
    for (int i = 0; sd && i < M; i++) {
        snprintf(name, sizeof name, "layer.%d.bias", i);
        found += ag_state_dict_get(sd, name) == ag_state_dict_tensor(sd, i) && strcmp(ag_state_dict_name(sd, i), name) == 0;
    }
    ok(found == M, "%d empty entries load, in file order, each found by name (%d)", M, found);
    ag_tensor *one = ag_ones(AG_SHAPE(1), AG_F64);
    ok(sd && ag_state_dict_set(sd, "layer.777.bias", one) == AG_OK && ag_state_dict_size(sd) == M &&
           ag_state_dict_get(sd, "layer.777.bias") == one && ag_state_dict_get(sd, "layer.50000.bias") == NULL,
       "setting an existing name replaces it; an absent name is absent");
    ag_release(one);
    ag_state_dict_free(sd);
}

/* ---- the atomic write every saver uses ---------------------------------------------------------------- */
static int file_mode(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int)(st.st_mode & 0777) : -1;
}

static int count_tmp(const char *prefix) {
    int n = 0;
    size_t len = strlen(prefix);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) n += strncmp(e->d_name, prefix, len) == 0 && strstr(e->d_name, ".tmp.");
    if (d) closedir(d);
    return n;
}

static void test_atomic_write(void) {
    char p[300], q[300];
    snprintf(p, sizeof p, "%s/w.bin", dir);
    mode_t old = umask(022);
    unlink(p);
    ok(ag__write_file("test", p, "abc", 3) == AG_OK && file_mode(p) == 0644, "umask 022: a new file is 0644 (%o)",
       file_mode(p));
    unlink(p);
    umask(077);
    ok(ag__write_file("test", p, "abc", 3) == AG_OK && file_mode(p) == 0600, "umask 077: a new file is 0600 (%o)",
       file_mode(p));
    umask(0);
    chmod(p, 0640);
    ok(ag__write_file("test", p, "abcd", 4) == AG_OK && file_mode(p) == 0640, "replacing a file keeps its mode (%o)",
       file_mode(p));
    umask(022);
    snprintf(q, sizeof q, "%s/m.safetensors", dir);
    ag_state_dict *sd = ag_state_dict_new();
    ag_tensor *t = ag_ones(AG_SHAPE(2), AG_F32);
    ag_state_dict_set(sd, "w", t);
    unlink(q);
    ok(ag_save_safetensors(sd, q) == AG_OK && file_mode(q) == 0644, "save_safetensors creates 0644 under umask 022 (%o)",
       file_mode(q));
    umask(old);

    /* Temporary files of killed saves: of this target and older than ten minutes go. */
    const char *names[] = {"w.bin.tmp.Ab3xYz", "w.bin.tmp.Fresh1", "other.tmp.Qq1234", "w.bin.tmp.notmine", "w.bin.tmp.x-y_z."};
    bool old_file[] = {true, false, true, true, true};
    for (int i = 0; i < 5; i++) {
        char tp[400];
        snprintf(tp, sizeof tp, "%s/%s", dir, names[i]);
        FILE *f = fopen(tp, "wb");
        fputs("partial", f);
        fclose(f);
        if (old_file[i]) {
            struct timespec ts[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
            utimensat(AT_FDCWD, tp, ts, 0);
        }
    }
    ok(ag__write_file("test", p, "xyz", 3) == AG_OK, "another save");
    bool gone[5];
    for (int i = 0; i < 5; i++) {
        char tp[400];
        snprintf(tp, sizeof tp, "%s/%s", dir, names[i]);
        gone[i] = access(tp, F_OK) != 0;
        unlink(tp);
    }
    ok(gone[0] && !gone[1], "it removed its target's stale temporary file and kept a fresh one (a save under way)");
    ok(!gone[2] && !gone[3] && !gone[4], "and left other files alone (another target, names mkstemp would not make)");
    ok(count_tmp("w.bin") == 0 && count_tmp("m.safetensors") == 0, "no temporary file is left by a save");

    /* A failing save leaves the old file byte for byte. */
    ag_set_allocator(failing_alloc, NULL);
    fail_at = 1;
    alloc_calls = 0;
    ag_status st = ag__write_file("test", p, "new!", 4);
    fail_at = -1;
    ag_set_allocator(NULL, NULL);
    unsigned char *buf;
    size_t n;
    ok(st == AG_ERR_NOMEM && ag__read_file("test", p, &buf, &n) == AG_OK && n == 3 && memcmp(buf, "xyz", 3) == 0,
       "a save that fails leaves the old file as it was");
    ag__free(buf);
    ok(ag__write_file("test", "", "x", 1) == AG_ERR_ARG, "an empty path is refused");
    unlink(p);
    unlink(q);
    ag_release(t);
    ag_state_dict_free(sd);
}

/* An empty dict saves as the header {} (padded) and loads back empty (found by fuzz_api:
 * the reader consumed the closing brace twice). */
static void test_empty_dict(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/empty.safetensors", dir);
    ag_state_dict *sd = ag_state_dict_new();
    ok(ag_save_safetensors(sd, path) == AG_OK, "an empty dict saves");
    ag_state_dict *back = ag_load_safetensors(path);
    ok(back && ag_state_dict_size(back) == 0, "and loads back empty (%s)", back ? "ok" : ag_last_error());
    ag_state_dict_free(back);
    ag_state_dict_free(sd);
    /* A bool tensor whose bytes are not all 0/1 (from ag_from_buffer or ag_empty) saves
     * as 0/1 and loads back (found by fuzz_api: the loader refused the file). */
    unsigned char raw[3] = {0, 190, 1};
    ag_tensor *mask = ag_from_buffer(raw, AG_SHAPE(3), AG_BOOL);
    sd = ag_state_dict_new();
    ag_state_dict_set(sd, "mask", mask);
    ok(ag_save_safetensors(sd, path) == AG_OK, "a bool tensor holding the byte 190 saves");
    back = ag_load_safetensors(path);
    const ag_tensor *m = back ? ag_state_dict_get(back, "mask") : NULL;
    ok(m && ((const unsigned char *)ag_data(m))[1] == 1 && ((const unsigned char *)ag_data(m))[0] == 0,
       "and loads back as 0, 1, 1 (%s)", back ? "ok" : ag_last_error());
    ag_state_dict_free(back);
    ag_state_dict_free(sd);
    ag_release(mask);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_round_trip();
    test_empty_dict();
    test_pytorch_file();
    test_corrupt();
    test_names();
    test_header_json();
    test_data_section();
    test_bounded();
    test_atomic_write();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) diag("could not remove %s", dir);
    ok(ag_live_tensors() == 0, "nothing leaked (%ld live tensors)", ag_live_tensors());
    return tap_done();
}

/*
 * State dicts and safetensors files: round trip, a file laid out by PyTorch's
 * safetensors, atomic saving, and corrupt or hostile files failing cleanly.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"

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
    const char *h7 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    write_st(p, h7, strlen(h7), 8);
    expect_format_error("duplicate names", p, "JSON");
    const char *h8 = "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    write_st(p, h8, strlen(h8), 4);
    expect_format_error("an empty tensor name (found by fuzz_safetensors)", p, "empty name");
    ag_clear_error();
    ok(ag_load_safetensors("/nonexistent/file.safetensors") == NULL && ag_last_status() == AG_ERR_IO &&
           strstr(ag_last_error(), "/nonexistent/file.safetensors"),
       "a missing file: %s", ag_last_error());
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_round_trip();
    test_pytorch_file();
    test_corrupt();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) diag("could not remove %s", dir);
    ok(ag_live_tensors() == 0, "nothing leaked (%ld live tensors)", ag_live_tensors());
    return tap_done();
}

/*
 * fuzz_csv.c - libFuzzer target for the CSV reader.  The first byte picks the
 * options (header, labels, label column, dtype, delimiter); the rest is the
 * file.  Any input must give consistent features/labels/names or NULL with a
 * message, never a crash or a leak.
 */
#include <string.h>
#include "agrad/agrad.h"
#include "data/internal.h"

static void check(bool cond) {
    if (!cond) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    static const int columns[4] = {-1, 0, 1, -2};
    static const char delims[4] = {',', ';', '\t', '|'};
    unsigned o = data[0];
    ag_csv_options opt = {
        .header = o & 1,
        .has_labels = (o >> 1) & 1,
        .label_column = columns[(o >> 2) & 3],
        .dtype = (o >> 4) & 1 ? AG_F64 : AG_F32,
        .delimiter = delims[(o >> 5) & 3],
    };
    ag_clear_error();
    ag_csv *csv = ag__csv_decode(data + 1, size - 1, "fuzz.csv", &opt);
    if (csv) {
        ag_tensor *x = ag_csv_features(csv), *y = ag_csv_labels(csv);
        check(x && ag_ndim(x) == 2 && ag_dtype_of(x) == opt.dtype);
        check(opt.has_labels ? y && ag_ndim(y) == 1 && ag_size(y, 0) == ag_size(x, 0) : !y);
        int64_t n = y ? ag_size(y, 0) : 0, k = ag_csv_num_classes(csv);
        if (y && ag_csv_class_name(csv, 0)) /* string labels: ids 0 .. k-1, each named */
            for (int64_t i = 0; i < n; i++) {
                int64_t id = ((const int64_t *)ag_data(y))[i];
                check(id >= 0 && id < k && ag_csv_class_name(csv, id));
            }
        if (opt.header)
            for (int64_t j = 0; j < ag_size(x, 1); j++) check(ag_csv_column_name(csv, j) != NULL);
        ag_csv_free(csv);
    } else {
        ag_status s = ag_last_status();
        check((s == AG_ERR_FORMAT || s == AG_ERR_ARG || s == AG_ERR_NOMEM) && ag_last_error()[0]);
    }
    check(ag_live_tensors() == 0);
    return 0;
}

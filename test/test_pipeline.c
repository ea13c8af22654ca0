/*
 * The data pipeline beyond tensors: datasets defined by callbacks, their
 * concatenation, streams; samplers and their statistics; the loader's worker
 * threads (the same batches for any number of workers, a failure stopping the
 * epoch with its message, shutdown mid-epoch, resuming); image transforms against
 * their formulas; PNG files and ImageFolder; bad data named by file and item.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "agrad/agrad.h"
#include "tap.h"

#define ag_data_f32(t) ((float *)ag_data(t))

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif
#define PNG_DIR FIXTURES "/png/"

static bool error_has(ag_status st, const char *part) {
    return ag_last_status() == st && strstr(ag_last_error(), part) != NULL;
}

/* ---- a callback dataset: item i is the image [1, 6, 5] with pixel (y, x) = i + y / 10 + x / 100, label i % 7 ---- */
typedef struct numbers {
    int64_t fail_at;  /* get fails at this item (-1: never) */
    int64_t wrong_at; /* get replaces x by a tensor of the wrong shape at this item */
    int64_t label_at; /* get gives label 99 at this item */
} numbers;

static ag_status numbers_get(void *ctx, int64_t i, ag_tensor **x, ag_tensor **y, uint64_t seed) {
    const numbers *c = ctx;
    (void)seed;
    if (i == c->fail_at) return ag_data_error(AG_ERR_FORMAT, "record %lld is damaged", (long long)i);
    if (i == c->wrong_at) {
        *x = ag_zeros(AG_SHAPE(2, 6, 5), AG_F32);
        return AG_OK;
    }
    float *p = ag_data_f32(*x);
    for (int y0 = 0; y0 < 6; y0++)
        for (int x0 = 0; x0 < 5; x0++) p[y0 * 5 + x0] = (float)i + (float)y0 / 10 + (float)x0 / 100;
    if (y) *(int64_t *)ag_data(*y) = i == c->label_at ? 99 : i % 7;
    return AG_OK;
}

static void numbers_name(void *ctx, int64_t i, char *buf, size_t size) {
    (void)ctx;
    snprintf(buf, size, "record-%lld.bin", (long long)i);
}

static ag_dataset *numbers_dataset(numbers *c, int64_t n) {
    ag_dataset_callbacks cb = {.ctx = c, .len = n, .num_classes = 7, .get = numbers_get, .name = numbers_name};
    cb.x = (ag_item_spec){AG_F32, AG_SHAPE(1, 6, 5)};
    cb.y = (ag_item_spec){AG_I64, AG_SCALAR_SHAPE};
    return ag_callback_dataset(&cb);
}

static void test_callback_dataset(void) {
    numbers c = {-1, -1, -1};
    ag_dataset *ds = numbers_dataset(&c, 20);
    ok(ds && ag_dataset_len(ds) == 20 && ag_dataset_num_classes(ds) == 7, "a callback dataset of 20 items, 7 classes");
    ag_tensor *x, *y;
    ok(ag_dataset_get(ds, 13, &x, &y) == AG_OK && x && ag_ndim(x) == 3 && fabs(ag_data_f32(x)[0] - 13) < 1e-6 &&
           fabs(ag_data_f32(x)[29] - (13 + 0.5 + 0.04)) < 1e-5 && *(int64_t *)ag_data(y) == 6,
       "dataset_get fills the item through get");
    ag_release(x), ag_release(y);

    c.wrong_at = 4;
    ok(ag_dataset_get(ds, 4, &x, &y) == AG_ERR_SHAPE && error_has(AG_ERR_SHAPE, "record-4.bin") &&
           error_has(AG_ERR_SHAPE, "[2, 6, 5]") && error_has(AG_ERR_SHAPE, "[1, 6, 5]"),
       "an item of the wrong shape from the callback: %s", ag_last_error());
    c.wrong_at = -1, c.label_at = 5;
    ok(ag_dataset_get(ds, 5, &x, &y) == AG_ERR_VALUE && error_has(AG_ERR_VALUE, "sample 5 (record-5.bin)") &&
           error_has(AG_ERR_VALUE, "label 99 is out of range for 7 classes"),
       "a label out of range: %s", ag_last_error());
    c.label_at = -1, c.fail_at = 6;
    ok(ag_dataset_get(ds, 6, &x, &y) == AG_ERR_FORMAT && error_has(AG_ERR_FORMAT, "record 6 is damaged") &&
           error_has(AG_ERR_FORMAT, "record-6.bin"),
       "a failing get keeps its message and gets the item's name: %s", ag_last_error());
    c.fail_at = -1;
    ag_clear_error();

    /* ConcatDataset: a tensor dataset of 3 items after the 20 */
    ag_tensor *tx = ag_full(AG_SHAPE(3, 1, 6, 5), -1, AG_F32), *ty = ag_zeros(AG_SHAPE(3), AG_I64);
    ag_dataset *td = ag_tensor_dataset(tx, ty);
    ag_dataset *parts[2] = {ds, td};
    ag_dataset *cat = ag_concat_dataset(parts, 2);
    ag_dataset_free(td); /* the concatenation holds its parts */
    ok(cat && ag_dataset_len(cat) == 23, "ConcatDataset of 20 + 3 items");
    ok(ag_dataset_get(cat, 19, &x, NULL) == AG_OK && fabs(ag_data_f32(x)[0] - 19) < 1e-6, "item 19 is the first part's last");
    ag_release(x);
    ok(ag_dataset_get(cat, 21, &x, NULL) == AG_OK && ag_data_f32(x)[0] == -1, "item 21 is the second part's second");
    ag_release(x);
    ag_tensor *bad = ag_zeros(AG_SHAPE(2, 5), AG_F32);
    ag_dataset *bd = ag_tensor_dataset(bad, bad);
    parts[1] = bd;
    ag_clear_error();
    ok(!ag_concat_dataset(parts, 2) && error_has(AG_ERR_SHAPE, "part 1's x items are [5], part 0's are [1, 6, 5]"),
       "ConcatDataset of parts with other items: %s", ag_last_error());
    ag_dataset_free(bd);
    ag_release(bad), ag_release(tx), ag_release(ty);

    /* a subset of a callback dataset keeps its names */
    ag_dataset *sub = ag_subset(cat, (int64_t[]){22, 3}, 2);
    char name[64];
    ok(sub && ag_dataset_item_name(sub, 1, name, sizeof name) == AG_OK && strcmp(name, "record-3.bin") == 0,
       "a subset's sample 1 is named by the callback: %s", name);
    ag_dataset_free(sub);
    ag_dataset_free(cat);
    ag_dataset_free(ds);
    ag_clear_error();
    ok(!ag_callback_dataset(&(ag_dataset_callbacks){.len = 3}) && ag_last_status() == AG_ERR_ARG, "no get: %s", ag_last_error());
    ag_clear_error();
}

/* ---- samplers ------------------------------------------------------------------------- */
static bool is_permutation(const int64_t *a, int64_t n) {
    bool seen[1000] = {false};
    for (int64_t i = 0; i < n; i++) {
        if (a[i] < 0 || a[i] >= n || seen[a[i]]) return false;
        seen[a[i]] = true;
    }
    return true;
}

static void test_samplers(void) {
    int64_t out[20000];
    ag_sampler *s = ag_sequential_sampler(5);
    ok(s && ag_sampler_len(s) == 5 && ag_sampler_sample(s, 1, out) == AG_OK && out[0] == 0 && out[4] == 4, "sequential: 0 .. 4");
    ag_sampler_free(s);

    s = ag_random_sampler(100, false, 0);
    int64_t again[100];
    ok(s && ag_sampler_sample(s, 7, out) == AG_OK && is_permutation(out, 100) && ag_sampler_sample(s, 7, again) == AG_OK &&
           memcmp(out, again, sizeof again) == 0,
       "random without replacement: a permutation, the same from the same seed");
    ag_sampler_free(s);

    /* with replacement: 20000 draws of 10 values, each count near 2000 (chi-square, 9 dof, p=0.001 at 27.9) */
    s = ag_random_sampler(10, true, 20000);
    ok(s && ag_sampler_len(s) == 20000 && ag_sampler_sample(s, 3, out) == AG_OK, "random with replacement: 20000 draws");
    double count[10] = {0}, chi = 0;
    for (int i = 0; i < 20000; i++) count[out[i]]++;
    for (int k = 0; k < 10; k++) chi += (count[k] - 2000) * (count[k] - 2000) / 2000;
    int repeats = 0;
    for (int i = 1; i < 100; i++) repeats += out[i] == out[i - 1];
    ok(chi < 27.9 && repeats > 0, "... uniform (chi-square %.2f < 27.9), with repeats", chi);
    ag_sampler_free(s);

    /* weighted with replacement: frequencies proportional to 1, 0, 3, 6 */
    double w[4] = {1, 0, 3, 6};
    s = ag_weighted_random_sampler(w, 4, 20000, true);
    ok(s && ag_sampler_sample(s, 11, out) == AG_OK, "weighted random sampler with replacement");
    double wc[4] = {0};
    for (int i = 0; i < 20000; i++) wc[out[i]]++;
    chi = 0;
    for (int k = 0; k < 4; k++)
        if (w[k] > 0) chi += (wc[k] - 2000 * w[k]) * (wc[k] - 2000 * w[k]) / (2000 * w[k]);
    ok(wc[1] == 0 && chi < 13.8, "... never the zero weight, counts %g %g %g %g (chi-square %.2f < 13.8, 2 dof)", wc[0], wc[1], wc[2],
       wc[3], chi);
    ag_sampler_free(s);
    /* without replacement: 3 distinct of the positive ones; the heavy one first most often */
    s = ag_weighted_random_sampler(w, 4, 3, false);
    int first_heavy = 0, distinct = 1;
    for (uint64_t seed = 0; seed < 2000 && s; seed++) {
        ag_sampler_sample(s, seed, out);
        distinct &= out[0] != out[1] && out[1] != out[2] && out[0] != out[2] && out[0] != 1 && out[1] != 1 && out[2] != 1;
        first_heavy += out[0] == 3;
    }
    ok(s && distinct && fabs(first_heavy / 2000.0 - 0.6) < 0.05, "without replacement: distinct, heavy one first %.3f (0.6)",
       first_heavy / 2000.0);
    ag_sampler_free(s);
    ag_clear_error();
    ok(!ag_weighted_random_sampler(w, 4, 4, false) && ag_last_status() == AG_ERR_VALUE, "4 draws of 3 positive weights: %s",
       ag_last_error());
    ok(!ag_weighted_random_sampler((double[]){1, -1}, 2, 1, true) && ag_last_status() == AG_ERR_VALUE, "a negative weight: %s",
       ag_last_error());
    ag_clear_error();

    /* subset random: a permutation of the given indices */
    int64_t idx[5] = {9, 2, 40, 7, 3};
    s = ag_subset_random_sampler(idx, 5);
    ok(s && ag_sampler_sample(s, 5, out) == AG_OK, "subset random sampler");
    int64_t sorted[5];
    memcpy(sorted, out, sizeof sorted);
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (sorted[j] < sorted[i]) {
                int64_t t = sorted[i];
                sorted[i] = sorted[j], sorted[j] = t;
            }
    ok(sorted[0] == 2 && sorted[1] == 3 && sorted[2] == 7 && sorted[3] == 9 && sorted[4] == 40, "... a permutation of its indices");
    ag_sampler_free(s);

    int64_t starts[8], nb;
    ok(ag_batch_sampler(10, 3, false, starts, &nb) == AG_OK && nb == 4 && starts[3] == 9 && starts[4] == 10,
       "BatchSampler: 10 by 3 is 4 batches, the last [9, 10)");
    ok(ag_batch_sampler(10, 3, true, starts, &nb) == AG_OK && nb == 3 && starts[3] == 9, "... with drop_last, 3 batches");
}

/* ---- a custom sampler: the share of rank `rank` of `world` processes of a
 * permutation drawn from the seed and the epoch (what a DistributedSampler does) ---- */
typedef struct shard {
    int64_t n, rank, world;
    int64_t epochs_seen[8];
    uint64_t seeds[8];
} shard;

static int64_t shard_len(void *ctx) {
    const shard *s = ctx;
    return (s->n - s->rank + s->world - 1) / s->world;
}

static ag_status shard_fill(void *ctx, int64_t epoch, uint64_t seed, int64_t *out) {
    shard *s = ctx;
    if (epoch < 8) s->epochs_seen[epoch] = 1, s->seeds[epoch] = seed;
    int64_t perm[64];
    ag_sampler *r = ag_random_sampler(s->n, false, 0);
    ag_status st = r ? ag_sampler_sample(r, seed, perm) : ag_last_status();
    ag_sampler_free(r);
    for (int64_t k = 0, i = s->rank; !st && i < s->n; i += s->world) out[k++] = perm[i];
    return st;
}

static void test_custom_sampler(void) {
    numbers c = {-1, -1, -1};
    ag_dataset *ds = numbers_dataset(&c, 20);
    bool seen[20] = {false}, disjoint = true;
    int64_t total = 0;
    for (int rank = 0; rank < 2; rank++) {
        shard sh = {.n = 20, .rank = rank, .world = 2};
        ag_sampler *s = ag_custom_sampler(&(ag_sampler_callbacks){.ctx = &sh, .len = shard_len, .fill = shard_fill});
        ag_loader *l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 4, .seed = 99, .sampler = s, .num_workers = rank});
        ag_tensor *x, *y;
        ag_scope_begin();
        ok(l && ag_loader_num_batches(l) == 3, "rank %d of 2: 10 samples, 3 batches", rank);
        while (l && ag_loader_next(l, &x, &y) > 0)
            for (int64_t i = 0; i < ag_size(x, 0); i++) {
                int64_t item = (int64_t)lround(ag_data_f32(x)[i * 30]);
                disjoint &= item >= 0 && item < 20 && !seen[item];
                if (item >= 0 && item < 20) seen[item] = true;
                total++;
            }
        ag_loader_next(l, &x, &y); /* epoch 2 starts */
        ok(sh.epochs_seen[0] && sh.epochs_seen[1] && sh.seeds[0] != sh.seeds[1], "fill gets the epoch and a new seed each epoch");
        ag_scope_end();
        ag_loader_free(l);
    }
    ok(disjoint && total == 20, "two ranks seeded alike share the epoch's permutation: disjoint halves covering the 20 samples");
    ag_dataset_free(ds);
}

/* The items of one epoch of l (their pixel (0, 0) is the item number) into ids; returns how many, -1 on failure. */
static int64_t epoch_items(ag_loader *l, int64_t *ids, int64_t cap) {
    ag_tensor *x, *y;
    int64_t n = 0;
    int r;
    ag_scope_begin();
    while ((r = ag_loader_next(l, &x, &y)) > 0)
        for (int64_t i = 0; i < ag_size(x, 0) && n < cap; i++) ids[n++] = (int64_t)lround(ag_data_f32(x)[i * 30]);
    ag_scope_end();
    return r < 0 ? -1 : n;
}

/* DistributedSampler as a sampler kind: 23 samples over 3 ranks, each loader
 * seeded alike with its own number of workers; shares padded or cut as PyTorch, a
 * new common order each epoch, batches cut by the loader, resume across ranks. */
static void test_distributed_sampler(void) {
    numbers c = {-1, -1, -1};
    ag_dataset *ds = numbers_dataset(&c, 23);
    int64_t ids[2][3][16], got[16];
    bool sizes = true, cover = true, differ = false, same_workers = true;
    for (int r = 0; r < 3; r++) {
        ag_sampler *s = ag_distributed_sampler(23, 3, r, true, false);
        ag_loader *l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 4, .seed = 7, .sampler = s, .num_workers = r});
        sizes &= l && ag_loader_num_batches(l) == 2;
        for (int e = 0; e < 2; e++) sizes &= epoch_items(l, ids[e][r], 16) == 8; /* ceil(23 / 3) */
        ag_loader_free(l);
        /* the same loader without workers hands out the same samples */
        l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 4, .seed = 7, .sampler = ag_distributed_sampler(23, 3, r, true, false)});
        same_workers &= l && epoch_items(l, got, 16) == 8 && memcmp(got, ids[0][r], sizeof got / 2) == 0;
        ag_loader_free(l);
    }
    for (int e = 0; e < 2; e++) {
        int seen[23] = {0}, twice = 0;
        for (int r = 0; r < 3; r++)
            for (int k = 0; k < 8; k++) seen[ids[e][r][k]]++;
        for (int i = 0; i < 23; i++) {
            cover &= seen[i] == 1 || seen[i] == 2;
            twice += seen[i] == 2;
        }
        cover &= twice == 1; /* 24 places for 23 samples: one padded */
    }
    for (int k = 0; k < 8; k++) differ |= ids[0][0][k] != ids[1][0][k];
    ok(sizes && cover, "3 ranks of 23 samples: 8 each in 2 batches of 4, every sample once but one padded, both epochs");
    ok(differ, "the second epoch draws a new common order (the loader's epoch is set_epoch)");
    ok(same_workers, "0, 1 and 2 workers: each rank's samples as without workers");

    /* drop_last: cut to 21, 7 a rank, disjoint; the loader's drop_last then keeps 1 batch of 4 */
    bool disjoint = true;
    int seen[23] = {0};
    for (int r = 0; r < 3; r++) {
        ag_loader *l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 4, .drop_last = true, .seed = 7,
                                                             .sampler = ag_distributed_sampler(23, 3, r, true, true)});
        disjoint &= l && ag_loader_num_batches(l) == 1 && epoch_items(l, got, 16) == 4;
        ag_loader_free(l);
        ag_sampler *s = ag_distributed_sampler(23, 3, r, true, true);
        disjoint &= ag_sampler_len(s) == 7 && ag_sampler_sample(s, 5, got) == AG_OK;
        for (int k = 0; k < 7; k++) disjoint &= got[k] >= 0 && got[k] < 23 && ++seen[got[k]] == 1;
        ag_sampler_free(s);
    }
    ok(disjoint, "drop_last: 7 samples a rank, disjoint; with the loader's drop_last one batch of 4");

    /* in order (no shuffle), padded: rank 1 of 3 over 10 takes positions 1, 4, 7 and 10 mod 10 */
    ag_sampler *s = ag_distributed_sampler(10, 3, 1, false, false);
    bool in_order = ag_sampler_sample(s, 0, got) == AG_OK;
    for (int k = 0; k < 4; k++) in_order &= got[k] == (1 + 3 * k) % 10;
    ok(in_order && ag_sampler_len(s) == 4, "without shuffle: rank 1 of 3 over 10 gets 1, 4, 7, 0");
    ag_sampler_free(s);

    /* rank 2 resumes from rank 0's state: the order saved is the whole one, before sharding */
    ag_loader *a = ag_loader_new(ds, &(ag_loader_options){.batch_size = 2, .shuffle = true, .seed = 3, .num_replicas = 3, .rank = 0});
    ag_loader *b = ag_loader_new(ds, &(ag_loader_options){.batch_size = 2, .shuffle = true, .seed = 3, .num_replicas = 3, .rank = 2});
    ag_loader *b2 = ag_loader_new(ds, &(ag_loader_options){.batch_size = 2, .shuffle = true, .seed = 99, .num_replicas = 3, .rank = 2});
    ag_tensor *x, *y;
    ag_scope_begin();
    ag_loader_next(a, &x, &y);
    ag_loader_next(b, &x, &y);
    ag_state_dict *sd = ag_state_dict_new();
    bool resumed = ag_loader_state_dict(a, sd) == AG_OK && ag_loader_load_state_dict(b2, sd) == AG_OK;
    int64_t rest_b[8], rest_b2[8];
    resumed = resumed && epoch_items(b, rest_b, 8) == 6 && epoch_items(b2, rest_b2, 8) == 6 &&
              memcmp(rest_b, rest_b2, 6 * sizeof(int64_t)) == 0;
    ag_state_dict_free(sd);
    ag_scope_end();
    ag_loader_free(a);
    ag_loader_free(b);
    ag_loader_free(b2);
    ok(resumed, "rank 2 loading rank 0's mid-epoch state hands out the rest of rank 2's share");

    ok(!ag_distributed_sampler(10, 3, 3, true, false) && error_has(AG_ERR_ARG, "rank 3 of num_replicas 3"),
       "rank 3 of 3: %s", ag_last_error());
    ok(!ag_distributed_sampler(10, 0, 0, true, false) && ag_last_status() == AG_ERR_ARG, "num_replicas 0: AG_ERR_ARG");
    ok(!ag_loader_new(ds, &(ag_loader_options){.num_replicas = 2, .sampler = ag_sequential_sampler(23)}) &&
           error_has(AG_ERR_ARG, "num_replicas"),
       "num_replicas with a sampler of one's own: %s", ag_last_error());
    ag_dataset_free(ds);
}

/* ---- the loader with workers -------------------------------------------------------------- */
/* Every batch of two epochs (x bytes and y) in a buffer; returns the number of floats written. */
static int64_t run_epochs(ag_dataset *ds, ag_loader_options o, float *buf, int64_t cap, int epochs) {
    ag_loader *l = ag_loader_new(ds, &o);
    if (!l) return -1;
    int64_t at = 0;
    for (int e = 0; e < epochs; e++) {
        ag_tensor *x, *y;
        int r;
        ag_scope_begin();
        while ((r = ag_loader_next(l, &x, &y)) > 0) {
            int64_t n = ag_numel(x);
            if (at + n + ag_numel(y) > cap) break;
            memcpy(buf + at, ag_data_f32(x), (size_t)n * sizeof(float));
            at += n;
            for (int64_t k = 0; k < ag_numel(y); k++) buf[at++] = (float)((int64_t *)ag_data(y))[k];
        }
        ag_scope_end();
        if (r < 0) at = -1;
    }
    ag_loader_free(l);
    return at;
}

static void test_workers(void) {
    numbers c = {-1, -1, -1};
    ag_dataset *ds = numbers_dataset(&c, 50);
    ag_compose *aug = ag_compose_new();
    ag_compose_random_crop(aug, 1);
    ag_compose_hflip(aug, 0.5);
    ag_compose_random_affine(aug, -20, 20, 0.1, 0.9, 1.1);
    ag_compose_gaussian_noise(aug, 0.1);
    ag_compose_random_erasing(aug, 0.5, 0.02, 0.2, 0.3, 3.3, 0);
    ag_dataset *td = ag_transformed_dataset(ds, aug);
    ag_compose_free(aug);
    static float ref[50 * 31 * 3], got[50 * 31 * 3];
    ag_loader_options o = {.batch_size = 8, .shuffle = true, .seed = 2024};
    int64_t n0 = run_epochs(td, o, ref, 50 * 31 * 3, 2);
    ok(n0 == 2 * 50 * 31, "0 workers: two epochs of 50 augmented items");
    for (int w = 1; w <= 3; w++) {
        o.num_workers = w;
        o.prefetch_factor = w == 3 ? 1 : 0;
        int64_t n = run_epochs(td, o, got, 50 * 31 * 3, 2);
        ok(n == n0 && memcmp(ref, got, (size_t)n0 * sizeof(float)) == 0, "%d worker(s): the same batches, bit for bit", w);
    }
    o.seed = 2025;
    o.num_workers = 2;
    int64_t n = run_epochs(td, o, got, 50 * 31 * 3, 2);
    ok(n == n0 && memcmp(ref, got, (size_t)n0 * sizeof(float)) != 0, "another seed: other batches");

    /* a failure at item 37 stops the epoch with the item's name, with workers and without */
    for (int w = 0; w <= 2; w += 2) {
        c.fail_at = 37;
        ag_loader *l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 4, .num_workers = w, .prefetch_factor = 3});
        ag_tensor *x, *y;
        int r, batches = 0;
        ag_scope_begin();
        while ((r = ag_loader_next(l, &x, &y)) > 0) batches++;
        ok(r == -1 && batches == 9 && error_has(AG_ERR_FORMAT, "sample 37 (record-37.bin)") &&
               error_has(AG_ERR_FORMAT, "record 37 is damaged"),
           "%d workers: batch 9 fails naming its item: %s", w, ag_last_error());
        ag_clear_error();
        ok(ag_loader_next(l, &x, &y) == -1 && error_has(AG_ERR_FORMAT, "record-37.bin"), "... and fails again until reset");
        ag_loader_reset(l);
        c.fail_at = -1;
        batches = 0;
        while ((r = ag_loader_next(l, &x, &y)) > 0) batches++;
        ok(r == 0 && batches == 13, "after reset a new epoch runs through (13 batches)");
        ag_scope_end();
        ag_loader_free(l);
    }
    /* a wrong item shape and a label out of range stop it too */
    c.wrong_at = 21;
    ag_loader *l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 5, .num_workers = 2});
    ag_tensor *x, *y;
    int r;
    ag_scope_begin();
    while ((r = ag_loader_next(l, &x, &y)) > 0) {}
    ok(r == -1 && error_has(AG_ERR_SHAPE, "sample 21 (record-21.bin)"), "a worker's wrong item shape: %s", ag_last_error());
    ag_scope_end();
    ag_loader_free(l);
    c.wrong_at = -1;

    /* freed mid-epoch with batches in flight: nothing leaks, no thread is left */
    for (int k = 0; k < 20; k++) {
        l = ag_loader_new(td, &(ag_loader_options){.batch_size = 3, .shuffle = true, .num_workers = 2, .prefetch_factor = 4});
        ag_scope_begin();
        for (int b = 0; b < k % 4; b++) ag_loader_next(l, &x, &y);
        ag_scope_end();
        ag_loader_free(l);
    }
    ok(1, "20 loaders with workers freed mid-epoch (ASan / TSan check the shutdown)");

    /* resuming mid-epoch with workers gives the batches that followed */
    l = ag_loader_new(td, &(ag_loader_options){.batch_size = 6, .shuffle = true, .seed = 5, .num_workers = 2});
    ag_state_dict *sd = ag_state_dict_new();
    ag_scope_begin();
    ag_loader_next(l, &x, &y);
    ag_loader_next(l, &x, &y);
    ag_loader_state_dict(l, sd);
    ag_loader_next(l, &x, &y);
    float want[30];
    memcpy(want, ag_data_f32(x), sizeof want);
    ag_loader *l2 = ag_loader_new(td, &(ag_loader_options){.batch_size = 6, .shuffle = true, .seed = 5, .num_workers = 1});
    ok(ag_loader_load_state_dict(l2, sd) == AG_OK && ag_loader_next(l2, &x, &y) == 1 && memcmp(ag_data_f32(x), want, sizeof want) == 0,
       "a loader resumed from a state dict gives the batch that followed the save");
    ag_scope_end();
    ag_loader_free(l2);
    ag_loader_free(l);
    ag_state_dict_free(sd);

    /* a sampler given to the loader: weighted draws with replacement */
    double w[50];
    for (int i = 0; i < 50; i++) w[i] = i == 3;
    l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 10, .sampler = ag_weighted_random_sampler(w, 50, 20, true)});
    ag_scope_begin();
    bool all3 = true;
    int nb = 0;
    while (ag_loader_next(l, &x, &y) > 0) {
        nb++;
        for (int i = 0; i < 10; i++) all3 &= fabs(ag_data_f32(x)[i * 30] - 3) < 1e-6;
    }
    ok(nb == 2 && all3, "a loader with a weighted sampler: 2 batches of item 3 only");
    ag_scope_end();
    ag_loader_free(l);
    ag_clear_error();
    l = ag_loader_new(ds, &(ag_loader_options){.sampler = ag_subset_random_sampler((int64_t[]){3, 50}, 2)});
    ok(!l && error_has(AG_ERR_INDEX, "up to 50"), "a sampler beyond the dataset: %s", ag_last_error());
    ag_clear_error();

    ag_dataset_free(td);
    ag_dataset_free(ds);
}

/* ---- threads: workers run agrad on one thread each; a caller waiting for data lends its cores ---- */
int ag__cpus_available(void); /* core/parallel.h: the CPUs the loader divides */

typedef struct sleepy {
    long delay_us;         /* each get sleeps this long */
    int threads_seen[64];  /* ag_get_num_threads() inside get, per item */
} sleepy;

static void sleep_us(long us) {
    struct timespec t = {us / 1000000, us % 1000000 * 1000};
    while (nanosleep(&t, &t) != 0) {}
}

static ag_status sleepy_get(void *ctx, int64_t i, ag_tensor **x, ag_tensor **y, uint64_t seed) {
    sleepy *c = ctx;
    (void)seed;
    c->threads_seen[i] = ag_get_num_threads(); /* item i is fetched by one thread */
    if (c->delay_us) sleep_us(c->delay_us);
    ag_data_f32(*x)[0] = (float)i;
    *(int64_t *)ag_data(*y) = 0;
    return AG_OK;
}

static void test_worker_threads(void) {
    sleepy c = {.delay_us = 15000}; /* long against a loaded machine's scheduling delays (see below) */
    ag_dataset_callbacks cb = {.ctx = &c, .len = 48, .get = sleepy_get};
    cb.x = (ag_item_spec){AG_F32, AG_SHAPE(1)};
    cb.y = (ag_item_spec){AG_I64, AG_SCALAR_SHAPE};
    ag_dataset *ds = ag_callback_dataset(&cb);
    int saved = ag_get_num_threads();
    ag_set_num_threads(8);
    int user = ag_get_num_threads(), cpus = ag__cpus_available();
    int lent = cpus - 2 < 1 ? 1 : cpus - 2, lowered = lent < user ? lent : user, lowered3 = lent < 3 ? lent : 3;
    ag_tensor *x, *y;

    /* slow items (30 ms a batch per worker), a caller that only takes batches: the data is
     * the bottleneck (with 3 ms items, a caller held off its CPU for a few ms under TSan on a
     * loaded machine let the workers fill every place ahead, and the loader then rightly gave
     * the caller its own count back: session 18's CI run at load 10), so after each batch the caller runs on the CPUs the 2 workers leave,
     * until the last batches, when no job is left to start; a count set in between is
     * the caller's own, and the epoch's end gives it back */
    ag_loader *l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 2, .num_workers = 2});
    bool paced = true, one = true;
    ag_scope_begin();
    for (int k = 0; k < 24; k++) {
        if (k == 12) ag_set_num_threads(3);
        paced &= ag_loader_next(l, &x, &y) == 1;
        if (k < 19) paced &= ag_get_num_threads() == (k < 12 ? lowered : lowered3);
    }
    ok(paced, "data-bound: after each batch the caller runs %d threads (of its %d, then 3, with %d CPUs and 2 busy workers)",
       lowered, user, cpus);
    ok(ag_loader_next(l, &x, &y) == 0 && ag_get_num_threads() == 3, "... and has its own count (3, set mid-epoch) at the epoch's end");
    for (int i = 0; i < 48; i++) one &= c.threads_seen[i] == 1;
    ok(one, "the workers run agrad's ops on one thread each (the caller had %d)", user);
    ag_set_num_threads(user);
    ag_loader_next(l, &x, &y);
    ag_loader_next(l, &x, &y);
    ag_loader_free(l);
    ok(ag_get_num_threads() == user, "a loader freed mid-epoch gives the caller its %d threads back", user);

    /* fast items, a caller whose steps take 10 ms: the batches are ready when asked for, so
     * after the first ones (the workers start with the epoch) the caller keeps its count */
    c.delay_us = 0;
    l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 3, .num_workers = 2});
    int own = 0;
    for (int k = 0; k < 16; k++) {
        ag_loader_next(l, &x, &y);
        own += k >= 2 && ag_get_num_threads() == user;
        sleep_us(10000);
    }
    ok(own >= 10, "training-bound: %d of the 14 steps after the first two ran on the caller's %d threads", own, user);
    ag_scope_end();
    ag_loader_free(l);
    ag_set_num_threads(saved);
    ag_dataset_free(ds);
}

/* ---- a collate callback: the mean of the items' first pixels ------------------------------ */
static ag_status mean_collate(void *ctx, int64_t n, ag_tensor *const *xs, ag_tensor *const *ys, ag_tensor **x, ag_tensor **y) {
    int *calls = ctx;
    __atomic_add_fetch(calls, 1, __ATOMIC_RELAXED);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ag_data_f32(xs[i])[0];
    *x = ag_scalar(s / (double)n, AG_F32);
    *y = ag_scalar((double)n, AG_F32);
    (void)ys;
    return AG_OK;
}

static void test_collate(void) {
    numbers c = {-1, -1, -1};
    ag_dataset *ds = numbers_dataset(&c, 10);
    int calls = 0;
    ag_loader *l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 4, .collate = mean_collate, .collate_ctx = &calls,
                                                          .num_workers = 2});
    ag_tensor *x, *y;
    ag_scope_begin();
    double got[3] = {0};
    int nb = 0;
    double position = -1;
    while (ag_loader_next(l, &x, &y) > 0 && nb < 3) {
        got[nb++] = ag_item(x) * 10 + ag_item(y);
        if (nb == 1) {
            ag_state_dict *sd = ag_state_dict_new();
            ag_loader_state_dict(l, sd);
            position = ag_state_dict_get_scalar(sd, "loader.position");
            ag_state_dict_free(sd);
        }
    }
    ok(position == 4, "after a collated batch of 4 (a 0-d x) the loader stands at sample 4 (%g)", position);
    ok(nb == 3 && fabs(got[0] - 19) < 1e-5 && fabs(got[1] - 59) < 1e-5 && fabs(got[2] - 87) < 1e-5 && calls == 3,
       "a collate callback gets each batch's items: means 1.5, 5.5, 8.5 of 4, 4, 2 items");
    ag_scope_end();
    ag_loader_free(l);
    ag_dataset_free(ds);
}

/* ---- a stream: items 0 .. limit-1, x = [i, i, i, i] as a [2, 2] image, y = i ------------------- */
typedef struct stream {
    int64_t at, limit, resets, fail_at;
} stream;

static int stream_next(void *ctx, ag_tensor **x, ag_tensor **y) {
    stream *s = ctx;
    if (s->at >= s->limit) return 0;
    if (s->at == s->fail_at) return ag_data_error(AG_ERR_IO, "read error at byte %lld", (long long)s->at * 16), -1;
    for (int k = 0; k < 4; k++) ((float *)ag_data(*x))[k] = (float)s->at;
    if (y) *(int64_t *)ag_data(*y) = s->at;
    s->at++;
    return 1;
}

static ag_status stream_reset(void *ctx) {
    stream *s = ctx;
    s->at = 0;
    s->resets++;
    return AG_OK;
}

static void test_stream(void) {
    stream s = {0, 10, 0, -1};
    ag_iterable_callbacks cb = {.ctx = &s, .next = stream_next, .reset = stream_reset};
    cb.x = (ag_item_spec){AG_F32, AG_SHAPE(2, 2)};
    cb.y = (ag_item_spec){AG_I64, AG_SCALAR_SHAPE};
    ag_dataset *ds = ag_iterable_dataset(&cb);
    ok(ds && ag_dataset_len(ds) == -1, "an iterable dataset has no length");
    ag_tensor *x, *y;
    ag_clear_error();
    ok(ag_dataset_get(ds, 0, &x, &y) == AG_ERR_ARG, "... nor random access: %s", ag_last_error());
    for (int w = 0; w <= 2; w++) {
        ag_loader *l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 3, .num_workers = w});
        ok(l && ag_loader_num_batches(l) == -1, "%d workers: a loader over it, batches unknown %s", w, ag_last_error());
        for (int e = 0; e < 2; e++) {
            ag_scope_begin();
            int64_t sizes[6] = {0}, next = 0;
            int nb = 0, r;
            bool order = true;
            while ((r = ag_loader_next(l, &x, &y)) > 0 && nb < 6) {
                sizes[nb++] = ag_shape_of(x).dim[0];
                for (int64_t i = 0; i < ag_numel(y); i++) order &= ((int64_t *)ag_data(y))[i] == next++;
            }
            ok(r == 0 && nb == 4 && sizes[0] == 3 && sizes[3] == 1 && order && next == 10,
               "epoch %d: batches of 3, 3, 3, 1 in stream order", e + 1);
            ag_scope_end();
        }
        ag_loader_free(l);
        s.at = 0;
    }
    ok(s.resets == 3, "reset before every epoch but each loader's first (%lld)", (long long)s.resets);
    /* a transformed stream with drop_last, and a failing read */
    ag_compose *norm = ag_compose_new();
    ag_compose_normalize(norm, (double[]){1}, (double[]){2}, 1);
    ag_dataset *td = ag_transformed_dataset(ds, norm);
    ag_compose_free(norm);
    ag_loader *l = ag_loader_new(td, &(ag_loader_options){.batch_size = 4, .drop_last = true, .num_workers = 2});
    ag_scope_begin();
    int nb = 0;
    bool norm_ok = true;
    while (ag_loader_next(l, &x, &y) > 0) {
        for (int64_t i = 0; i < 4; i++) norm_ok &= ag_data_f32(x)[i * 4 + 3] == (float)((((int64_t *)ag_data(y))[i] - 1) / 2.0);
        nb++;
    }
    ok(nb == 2 && norm_ok, "a normalised stream with drop_last: 2 batches of (i - 1) / 2");
    s.fail_at = 5;
    ag_loader_reset(l);
    int r;
    while ((r = ag_loader_next(l, &x, &y)) > 0) {}
    ok(r == -1 && error_has(AG_ERR_IO, "sample 5: read error at byte 80"), "a failing read stops the stream: %s", ag_last_error());
    ag_scope_end();
    ag_loader_free(l);
    ag_dataset_free(td);
    ag_dataset_free(ds);
    ag_clear_error();
}

/* ---- transforms against their formulas --------------------------------------------------- */
static ag_tensor *ramp(int64_t C, int64_t H, int64_t W) {
    ag_tensor *t = ag_zeros(AG_SHAPE(C, H, W), AG_F32);
    float *p = ag_data_f32(t);
    for (int64_t i = 0; i < C * H * W; i++) p[i] = (float)(i + 1);
    return t;
}

static ag_tensor *apply(void (*add)(ag_compose *), ag_tensor *img, uint64_t seed) {
    ag_compose *c = ag_compose_new();
    add(c);
    ag_tensor *out = ag_clone(img);
    ag_compose_apply(c, out, seed);
    ag_compose_free(c);
    return out;
}

static void add_flip1(ag_compose *c) { ag_compose_hflip(c, 1); }
static void add_flip0(ag_compose *c) { ag_compose_hflip(c, 0); }
static void add_flip_half(ag_compose *c) { ag_compose_hflip(c, 0.5); }
static void add_crop2(ag_compose *c) { ag_compose_random_crop(c, 2); }
static void add_rot90(ag_compose *c) { ag_compose_random_affine(c, 90, 90, 0, 1, 1); }
static void add_zoom2(ag_compose *c) { ag_compose_random_affine(c, 0, 0, 0, 2, 2); }
static void add_shift(ag_compose *c) { ag_compose_random_affine(c, 0, 0, 0.25, 1, 1); }
static void add_noise(ag_compose *c) { ag_compose_gaussian_noise(c, 0.5); }
static void add_erase(ag_compose *c) { ag_compose_random_erasing(c, 1, 0.1, 0.2, 0.5, 2, -7); }
static void add_norm(ag_compose *c) { ag_compose_normalize(c, (double[]){1, 10}, (double[]){2, 4}, 2); }

#define AT(t, c, y, x) (ag_data_f32(t)[((c) * H + (y)) * W + (x)])

static void test_transforms(void) {
    const int64_t C = 2, H = 6, W = 5;
    ag_tensor *img = ramp(C, H, W), *o;
    bool same = true;
    o = apply(add_flip1, img, 1);
    for (int64_t c = 0; c < C; c++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) same &= AT(o, c, y, x) == AT(img, c, y, W - 1 - x);
    ok(same, "hflip(p=1): out[c, y, x] = in[c, y, W-1-x]");
    o = apply(add_flip0, img, 1);
    ok(memcmp(ag_data_f32(o), ag_data_f32(img), sizeof(float) * 60) == 0, "hflip(p=0): unchanged");
    int flips = 0;
    for (uint64_t s = 0; s < 1000; s++) {
        ag_scope_begin();
        flips += apply(add_flip_half, img, s) && AT(apply(add_flip_half, img, s), 0, 0, 0) != AT(img, 0, 0, 0);
        ag_scope_end();
    }
    ok(flips > 440 && flips < 560, "hflip(p=0.5): %d of 1000 flipped", flips);

    /* random crop with padding 2: a shift of the zero-padded picture by (top - 2, left - 2), every offset seen */
    bool offsets[5][5] = {{false}}, all_shifts = true;
    for (uint64_t s = 0; s < 400; s++) {
        ag_scope_begin();
        o = apply(add_crop2, img, s);
        bool found = false;
        for (int top = 0; top < 5 && !found; top++)
            for (int left = 0; left < 5 && !found; left++) {
                bool m = true;
                for (int64_t c = 0; c < C; c++)
                    for (int64_t y = 0; y < H; y++)
                        for (int64_t x = 0; x < W; x++) {
                            int64_t sy = y + top - 2, sx = x + left - 2;
                            float want = sy >= 0 && sy < H && sx >= 0 && sx < W ? AT(img, c, sy, sx) : 0;
                            m &= AT(o, c, y, x) == want;
                        }
                if (m) found = offsets[top][left] = true;
            }
        all_shifts &= found;
        ag_scope_end();
    }
    int seen = 0;
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 5; b++) seen += offsets[a][b];
    ok(all_shifts && seen == 25, "random crop(padding 2): each output is in[y + top - 2, x + left - 2], all 25 offsets seen");

    /* affine: a quarter turn of a square image, a zoom by 2, whole-pixel shifts */
    ag_tensor *sq = ramp(1, 4, 4);
    o = apply(add_rot90, sq, 3);
    same = true;
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) same &= ag_data_f32(o)[y * 4 + x] == ag_data_f32(sq)[x * 4 + (3 - y)];
    ok(same, "affine(90 degrees): out[y, x] = in[x, W-1-y], an anticlockwise quarter turn");
    o = apply(add_zoom2, sq, 3);
    same = true;
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            /* u = (x + 0.5 - 2) / 2, src = round(u + 1.5) */
            int sx = (int)floor((x + 0.5 - 2) / 2 + 1.5 + 0.5), sy = (int)floor((y + 0.5 - 2) / 2 + 1.5 + 0.5);
            same &= ag_data_f32(o)[y * 4 + x] == ag_data_f32(sq)[sy * 4 + sx];
        }
    ok(same, "affine(scale 2): out[y, x] = in[round((y - 1.5) / 2 + 1.5), ...]");
    bool shifts_ok = true;
    int distinct_shifts = 0;
    bool shift_seen[5][5] = {{false}};
    for (uint64_t s = 0; s < 200; s++) {
        ag_scope_begin();
        o = apply(add_shift, sq, s);
        bool found = false;
        for (int ty = -1; ty <= 1 && !found; ty++)
            for (int tx = -1; tx <= 1 && !found; tx++) {
                bool m = true;
                for (int y = 0; y < 4; y++)
                    for (int x = 0; x < 4; x++) {
                        int sy = y - ty, sx = x - tx;
                        m &= ag_data_f32(o)[y * 4 + x] == (sy >= 0 && sy < 4 && sx >= 0 && sx < 4 ? ag_data_f32(sq)[sy * 4 + sx] : 0);
                    }
                if (m) {
                    found = true;
                    distinct_shifts += !shift_seen[ty + 2][tx + 2];
                    shift_seen[ty + 2][tx + 2] = true;
                }
            }
        shifts_ok &= found;
        ag_scope_end();
    }
    ok(shifts_ok && distinct_shifts == 9, "affine(translate 0.25 of 4 pixels): whole shifts in [-1, 1]^2, all 9 seen");

    /* Gaussian noise: residuals of mean 0, std 0.5 over 6000 values */
    ag_tensor *big = ag_zeros(AG_SHAPE(1, 60, 100), AG_F32);
    o = apply(add_noise, big, 9);
    double m = 0, v = 0;
    for (int i = 0; i < 6000; i++) m += ag_data_f32(o)[i];
    m /= 6000;
    for (int i = 0; i < 6000; i++) v += (ag_data_f32(o)[i] - m) * (ag_data_f32(o)[i] - m);
    v = sqrt(v / 5999);
    ok(fabs(m) < 0.02 && fabs(v - 0.5) < 0.015, "noise(std 0.5): mean %.4f, std %.4f", m, v);
    /* each 512 pixels have a key of their own (no block repeats the one before), and the seed repeats the picture */
    double corr = 0;
    for (int i = 0; i + 512 < 6000; i++) corr += ag_data_f32(o)[i] * ag_data_f32(o)[i + 512];
    corr /= 5488 * 0.25;
    ag_tensor *again = apply(add_noise, big, 9);
    ok(fabs(corr) < 5 / sqrt(5488.0) && again && memcmp(ag_data_f32(o), ag_data_f32(again), 6000 * sizeof(float)) == 0,
       "noise: pixels 512 apart uncorrelated (%.4f), the same picture from the same seed", corr);

    /* random erasing (p = 1): one h x w box of -7 in every channel, area within [0.1, 0.2] of 60 */
    bool boxes = true;
    for (uint64_t s = 0; s < 100; s++) {
        ag_scope_begin();
        o = apply(add_erase, ramp(2, 10, 6), s);
        int64_t n = 0, y0 = 99, y1 = -1, x0 = 99, x1 = -1;
        for (int64_t y = 0; y < 10; y++)
            for (int64_t x = 0; x < 6; x++)
                if (ag_data_f32(o)[y * 6 + x] == -7) {
                    n++;
                    y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1, x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
                    boxes &= ag_data_f32(o)[60 + y * 6 + x] == -7;
                }
        int64_t h = y1 - y0 + 1, w = x1 - x0 + 1;
        /* h w is near A in [6, 12] (rounding of sqrt(A r) and sqrt(A / r)) */
        boxes &= n > 0 && n == h * w && n >= 3 && n <= 16;
        ag_scope_end();
    }
    ok(boxes, "random erasing(p=1): a solid box of the value in every channel, of about 10-20%% of the area");

    o = apply(add_norm, img, 0);
    same = true;
    for (int64_t i = 0; i < 60; i++) same &= ag_data_f32(o)[i] == (float)((ag_data_f32(img)[i] - (i < 30 ? 1.0 : 10.0)) / (i < 30 ? 2.0 : 4.0));
    ok(same, "normalize: (x - mean[c]) / std[c] per channel");

    /* the same seed, the same picture; errors */
    ag_compose *c = ag_compose_new();
    ag_compose_random_affine(c, -30, 30, 0.1, 0.8, 1.2);
    ag_compose_gaussian_noise(c, 0.1);
    ag_tensor *a = ag_clone(img), *b = ag_clone(img);
    ag_compose_apply(c, a, 42);
    ag_compose_apply(c, b, 42);
    ok(memcmp(ag_data_f32(a), ag_data_f32(b), 240) == 0, "Compose: the same seed gives the same picture");
    ag_compose_apply(c, b, 43);
    ok(memcmp(ag_data_f32(a), ag_data_f32(b), 240) != 0, "... another seed another one");
    ag_clear_error();
    ok(ag_compose_apply(c, ag_zeros(AG_SHAPE(5), AG_F32), 1) == AG_ERR_SHAPE, "a 1-d image: %s", ag_last_error());
    ok(ag_compose_apply(c, ag_zeros(AG_SHAPE(2, 2), AG_F64), 1) == AG_ERR_DTYPE, "a float64 image: %s", ag_last_error());
    ok(ag_compose_hflip(c, 1.5) == AG_ERR_ARG && error_has(AG_ERR_ARG, "p 1.5"), "hflip p 1.5: %s", ag_last_error());
    ok(ag_compose_normalize(c, (double[]){0}, (double[]){0}, 1) == AG_ERR_ARG, "normalize std 0: %s", ag_last_error());
    ag_compose *n3 = ag_compose_new();
    ag_compose_normalize(n3, (double[]){0, 0, 0}, (double[]){1, 1, 1}, 3);
    ok(ag_compose_apply(n3, ag_clone(img), 1) == AG_ERR_SHAPE, "a 3-channel normalize on 2 channels: %s", ag_last_error());
    ag_compose_free(n3);
    ag_compose_free(c);
    ag_clear_error();
}

/* RandomAffine with fixed angle and zoom and no shift draws nothing that matters, so its
 * output is known: each pixel is the source pixel the per-pixel formula of augment.c
 * picks, (floor(u cos - v sin + W/2), floor(u sin + v cos + H/2)) with
 * (u, v) = ((x + 1/2 - W/2) / zoom, (y + 1/2 - H/2) / zoom), 0 outside.  The warp
 * works from tables of column terms in passes of 256 columns, so a 300-wide image
 * crosses a pass. */
static void test_affine_formula(void) {
    static const double angles[] = {0, 7.5, -33, 90, 135, -180, 271}, zooms[] = {1, 0.77, 1.3, 2.5};
    static const int64_t sizes[][3] = {{1, 28, 28}, {3, 5, 300}, {2, 9, 4}, {1, 1, 1}};
    bool same = true;
    int pictures = 0;
    for (size_t a = 0; a < sizeof angles / sizeof *angles; a++)
        for (size_t z = 0; z < sizeof zooms / sizeof *zooms; z++)
            for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
                int64_t C = sizes[k][0], H = sizes[k][1], W = sizes[k][2];
                ag_scope_begin();
                ag_compose *c = ag_compose_new();
                ag_compose_random_affine(c, angles[a], angles[a], 0, zooms[z], zooms[z]);
                ag_tensor *img = ramp(C, H, W), *o = ag_clone(img);
                same &= ag_compose_apply(c, o, 7 + a) == AG_OK;
                double t = angles[a] * 3.14159265358979323846 / 180, ca = cos(t), sa = sin(t), zoom = zooms[z];
                for (int64_t y = 0; y < H; y++)
                    for (int64_t x = 0; x < W; x++) {
                        double u = ((double)x + 0.5 - (double)W / 2) / zoom, v = ((double)y + 0.5 - (double)H / 2) / zoom;
                        double sx = floor(u * ca - v * sa + (double)W / 2 - 0.5 + 0.5), sy = floor(u * sa + v * ca + (double)H / 2 - 0.5 + 0.5);
                        bool inside = sx >= 0 && sx < (double)W && sy >= 0 && sy < (double)H;
                        for (int64_t ch = 0; ch < C; ch++) {
                            float want = inside ? AT(img, ch, (int64_t)sy, (int64_t)sx) : 0.0f;
                            same &= AT(o, ch, y, x) == want;
                        }
                    }
                pictures++;
                ag_compose_free(c);
                ag_scope_end();
            }
    ok(same, "affine: %d pictures (angles to 271 degrees, zoom 0.77 to 2.5, up to 300 wide, 1 to 3 channels) are pixel for "
             "pixel the per-pixel formula", pictures);
}

/* ---- PNG files and ImageFolder ------------------------------------------------------------- */
static void test_png(void) {
    ag_tensor *t = ag_load_png(PNG_DIR "gray8.png", 0);
    bool right = t && ag_ndim(t) == 3 && ag_shape_of(t).dim[0] == 1 && ag_shape_of(t).dim[1] == 3 && ag_shape_of(t).dim[2] == 4 &&
                 ag_dtype_of(t) == AG_U8;
    for (int y = 0; right && y < 3; y++)
        for (int x = 0; x < 4; x++) right &= ((uint8_t *)ag_data(t))[y * 4 + x] == 10 * y + x;
    ok(right, "grey 8-bit PNG: uint8 [1, 3, 4], pixel 10 y + x");
    const char *same_as_grey[] = {"gray16.png", "palette.png", "interlaced.png"};
    for (int k = 0; k < 3; k++) {
        char path[256];
        snprintf(path, sizeof path, PNG_DIR "%s", same_as_grey[k]);
        ag_tensor *u = ag_load_png(path, 1);
        ok(u && t && ag_numel(u) == 12 && memcmp(ag_data(u), ag_data(t), 12) == 0, "%s as grey: the same pixels", same_as_grey[k]);
    }
    ag_tensor *c = ag_load_png(PNG_DIR "rgb8.png", 0);
    right = c && ag_shape_of(c).dim[0] == 3;
    for (int y = 0; right && y < 3; y++)
        for (int x = 0; x < 4; x++) {
            const uint8_t *p = ag_data(c);
            right &= p[y * 4 + x] == 10 * y + x && p[12 + y * 4 + x] == 100 + x && p[24 + y * 4 + x] == 200 - y;
        }
    ok(right, "RGB PNG: planes [3, 3, 4] of r, g, b");
    ag_tensor *c4 = ag_load_png(PNG_DIR "rgba8.png", 3);
    ok(c4 && c && ag_shape_of(c4).dim[0] == 3 && memcmp(ag_data(c4), ag_data(c), 36) == 0, "RGBA read as RGB: the colour planes");
    ag_tensor *a4 = ag_load_png(PNG_DIR "rgb8.png", 4);
    ok(a4 && ag_shape_of(a4).dim[0] == 4 && ((uint8_t *)ag_data(a4))[36] == 255, "RGB read as RGBA: alpha 255");
    ag_clear_error();
    ok(!ag_load_png(PNG_DIR "corrupt.png", 0) && error_has(AG_ERR_FORMAT, "corrupt.png"), "a corrupt PNG: %s", ag_last_error());
    ok(!ag_load_png(PNG_DIR "truncated.png", 0) && error_has(AG_ERR_FORMAT, "truncated.png"), "a truncated PNG: %s", ag_last_error());
    ok(!ag_load_png(PNG_DIR "missing.png", 0) && error_has(AG_ERR_IO, "missing.png"), "a missing file: %s", ag_last_error());
    ok(!ag_load_png(PNG_DIR "bomb.png", 0) && error_has(AG_ERR_FORMAT, "bomb.png: a 20000 x 20000 image has more pixels than the limit"),
       "a header claiming 4e8 pixels is refused before any allocation: %s", ag_last_error());
    ok(!ag_load_png(PNG_DIR "forged.png", 0) && error_has(AG_ERR_FORMAT, "forged.png: a 3000 x 3000 image cannot fit in a file of this size"),
       "a header claiming 9 MB in 69 bytes is refused before any allocation: %s", ag_last_error());
    ok(!ag_load_png(FIXTURES "/iris_fixture_does_not_exist", 2) && ag_last_status() == AG_ERR_ARG, "channels 2: %s", ag_last_error());
    ag_clear_error();

    ag_dataset *ds = ag_image_folder(PNG_DIR "folder", NULL);
    ok(ds && ag_dataset_len(ds) == 5 && ag_dataset_num_classes(ds) == 2 && strcmp(ag_dataset_class_name(ds, 0), "circle") == 0 &&
           strcmp(ag_dataset_class_name(ds, 1), "square") == 0 && !ag_dataset_class_name(ds, 2),
       "ImageFolder: 5 images of classes circle, square (notes.txt left out)");
    ag_tensor *x, *y;
    ok(ds && ag_dataset_get(ds, 4, &x, &y) == AG_OK && ag_shape_of(x).dim[0] == 1 && ag_shape_of(x).dim[1] == 5 &&
           ag_shape_of(x).dim[2] == 6 && *(int64_t *)ag_data(y) == 1 &&
           fabs(ag_data_f32(x)[2 * 6 + 3] - (40 + 100 + 10 + 3) / 255.0) < 1e-6,
       "sample 4 is square/img1.png: float [1, 5, 6] = pixels / 255, class 1");
    char name[256];
    ag_dataset_item_name(ds, 1, name, sizeof name);
    ok(strstr(name, "folder/circle/img1.png") != NULL, "items are named by their file: %s", name);
    ag_loader *l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 2, .num_workers = 2});
    int nb = 0;
    ag_scope_begin();
    int64_t labels = 0;
    while (ag_loader_next(l, &x, &y) > 0) {
        nb++;
        for (int64_t i = 0; i < ag_numel(y); i++) labels = labels * 10 + ((int64_t *)ag_data(y))[i];
    }
    ok(nb == 3 && labels == 11, "a loader over it: 3 batches, labels 0 0 0 1 1");
    ag_scope_end();
    ag_loader_free(l);
    ag_dataset_free(ds);

    ds = ag_image_folder(PNG_DIR "folder_bad", NULL);
    ok(ds && ag_dataset_len(ds) == 3, "a folder with bad images opens (files are read when fetched)");
    ag_clear_error();
    ok(ds && ag_dataset_get(ds, 1, &x, &y) == AG_ERR_FORMAT && error_has(AG_ERR_FORMAT, "sample 1 (") &&
           error_has(AG_ERR_FORMAT, "b_corrupt.png"),
       "the corrupt image, named: %s", ag_last_error());
    ok(ds && ag_dataset_get(ds, 2, &x, &y) == AG_ERR_SHAPE && error_has(AG_ERR_SHAPE, "c_small.png is [1, 3, 4]") &&
           error_has(AG_ERR_SHAPE, "[1, 5, 6]"),
       "an image of another size, named: %s", ag_last_error());
    l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 1, .num_workers = 2});
    ag_scope_begin();
    int r;
    nb = 0;
    while ((r = ag_loader_next(l, &x, &y)) > 0) nb++;
    ok(r == -1 && nb == 1 && error_has(AG_ERR_FORMAT, "b_corrupt.png"), "a worker meeting it stops the loader: %s", ag_last_error());
    ag_scope_end();
    ag_loader_free(l);
    ag_dataset_free(ds);
    ag_clear_error();
    ok(!ag_image_folder(PNG_DIR "no_such_folder", NULL) && ag_last_status() == AG_ERR_IO, "a missing root: %s", ag_last_error());
    ok(!ag_image_folder(PNG_DIR "folder/circle", NULL) && ag_last_status() == AG_ERR_VALUE, "a root without class folders: %s",
       ag_last_error());
    ag_clear_error();

    /* a tensor dataset with a label out of range, checked when asked */
    ag_tensor *tx = ag_zeros(AG_SHAPE(4, 2), AG_F32), *ty = ag_from_data((int64_t[]){0, 1, 5, 2}, AG_SHAPE(4), AG_I64);
    ds = ag_tensor_dataset(tx, ty);
    ok(ag_dataset_set_num_classes(ds, 3) == AG_OK, "set_num_classes(3) on int64 labels");
    l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 2});
    ag_scope_begin();
    ok(ag_loader_next(l, &x, &y) == 1 && ag_loader_next(l, &x, &y) == -1 && error_has(AG_ERR_VALUE, "sample 2: label 5 is out of range for 3 classes"),
       "the batch holding label 5 fails naming the sample: %s", ag_last_error());
    ag_scope_end();
    ag_loader_free(l);
    ag_dataset_free(ds);
    ag_clear_error();
}

/* With no scope open, what these functions return belongs to the caller; once
 * released, no tensor is left (the workers' batches included). */
static void test_no_scope(void) {
    long before = ag_live_tensors();
    numbers c = {-1, -1, -1};
    ag_dataset *ds = numbers_dataset(&c, 12);
    ag_compose *aug = ag_compose_new();
    ag_compose_random_affine(aug, -10, 10, 0.1, 0.9, 1.1);
    ag_dataset *td = ag_transformed_dataset(ds, aug);
    ag_tensor *x = NULL, *y = NULL;
    bool fine = ag_dataset_get(td, 3, &x, &y) == AG_OK;
    ag_release(x), ag_release(y);
    fine &= ag_dataset_tensors(td, &x, &y) == AG_OK && ag_shape_of(x).dim[0] == 12;
    ag_release(x), ag_release(y);
    ag_loader *l = ag_loader_new(td, &(ag_loader_options){.batch_size = 5, .num_workers = 2});
    int r, nb = 0;
    while ((r = ag_loader_next(l, &x, &y)) > 0) {
        nb++;
        ag_release(x), ag_release(y);
    }
    ag_loader_next(l, &x, NULL); /* the next epoch's first batch, without y */
    ag_release(x);
    ag_loader_free(l);
    ag_tensor *png = ag_load_png(PNG_DIR "rgb8.png", 0);
    fine &= png != NULL && r == 0 && nb == 3;
    ag_release(png);
    ag_compose_free(aug);
    ag_dataset_free(td);
    ag_dataset_free(ds);
    ok(fine && ag_live_tensors() == before, "without a scope: items, stacked items, batches from workers and a PNG belong "
                                            "to the caller (%ld tensors left)", ag_live_tensors() - before);
}

int main(void) {
    test_no_scope();
    ag_scope_begin();
    test_callback_dataset();
    test_samplers();
    test_workers();
    test_worker_threads();
    test_custom_sampler();
    test_distributed_sampler();
    test_collate();
    test_stream();
    test_transforms();
    test_affine_formula();
    test_png();
    ag_scope_end();
    return tap_done();
}

/*
 * dist_train.h - one data-parallel training run, shared by test_dist.c (ranks as
 * threads) and test_mpi.c (ranks as processes under mpirun).
 *
 * The global batch is G = W·B·accum samples of fixed data.  Rank r of W takes
 * micro-batch k's rows [(k·W + r)·B, +B) for k < accum, the first accum - 1 inside
 * no_sync, each loss the micro-batch mean divided by accum: the mean gradient over
 * the ranks is then the gradient of the mean loss over all G samples, which is
 * what one process training on the whole batch computes (comm NULL).  Each rank
 * starts from its own seed; the wrapper's broadcast makes rank 0's weights
 * everyone's, so the reference starts from rank 0's seed.
 */
#ifndef DIST_TRAIN_H
#define DIST_TRAIN_H

#include <math.h>
#include <string.h>
#include "agrad/agrad.h"

enum { DT_IN = 5, DT_HIDDEN = 7, DT_OUT = 3, DT_MAX_PARAMS = 8 };

typedef struct dist_cfg {
    int world;            /* ranks whose shares make the global batch */
    int64_t batch;        /* B: rows per rank per micro-batch */
    int accum;            /* micro-batches per step (the first accum - 1 in no_sync) */
    int steps;
    bool adam;            /* Adam, else SGD with momentum */
    bool overlap;
    int64_t bucket_cap;   /* bytes; 0: the default */
    bool unused;          /* a model with a layer its forward never uses (find_unused_parameters) */
    bool batch_norm;      /* a BatchNorm1d after the first layer, made SyncBatchNorm when distributed */
    bool static_graph;    /* ddp's static_graph (then without find_unused_parameters) */
} dist_cfg;

/* Sample i's inputs and targets: smooth fixed functions, no generator. */
static void dt_sample(int64_t i, double *x, double *y) {
    for (int j = 0; j < DT_IN; j++) x[j] = sin(0.37 * (double)i + 1.3 * j) + 0.1 * (double)(j % 2);
    for (int j = 0; j < DT_OUT; j++) y[j] = cos(0.23 * (double)i - 0.7 * j);
}

/* forward of the model with an unused layer: child "used" only. */
static ag_tensor *dt_partial_forward(ag_module *m, ag_tensor *x) {
    return ag_module_forward(ag_module_get_child(m, "used"), x);
}
static const ag_module_type dt_partial_type = {"Partial", dt_partial_forward, NULL, NULL};

static ag_module *dt_model(uint64_t seed, const dist_cfg *cfg) {
    ag_manual_seed(seed);
    ag_module *m;
    if (cfg->unused) {
        m = ag_module_new(&dt_partial_type, NULL);
        ag_module_add_child(m, "used", AG_SEQUENTIAL(ag_nn_linear(DT_IN, DT_HIDDEN, true), ag_nn_tanh(),
                                                     ag_nn_linear(DT_HIDDEN, DT_OUT, true)));
        ag_module_add_child(m, "spare", ag_nn_linear(DT_IN, DT_OUT, true));
    } else if (cfg->batch_norm) {
        /* no bias before the normalisation: its gradient is 0 up to rounding, which Adam would amplify */
        m = AG_SEQUENTIAL(ag_nn_linear(DT_IN, DT_HIDDEN, false), ag_nn_batch_norm1d(DT_HIDDEN, 1e-5, 0.1, true, true),
                          ag_nn_tanh(), ag_nn_linear(DT_HIDDEN, DT_OUT, true));
    } else {
        m = AG_SEQUENTIAL(ag_nn_linear(DT_IN, DT_HIDDEN, true), ag_nn_tanh(), ag_nn_linear(DT_HIDDEN, DT_OUT, true));
    }
    if (m && ag_module_to_dtype(m, AG_F64) != AG_OK) {
        ag_module_free(m);
        return NULL;
    }
    return m;
}

/* Trains as rank ag_comm_rank(comm) (comm NULL: one process on the whole global
 * batch); writes every parameter then every buffer, in order, to out (at most cap
 * values) and their count to *n.  *buckets gets the wrapper's bucket count. */
static ag_status dist_train(ag_comm *comm, const dist_cfg *cfg, double *out, int64_t cap, int64_t *n, int *buckets) {
    int rank = comm ? ag_comm_rank(comm) : 0;
    int64_t rows = comm ? cfg->batch : cfg->batch * cfg->world * cfg->accum;
    int micro = comm ? cfg->accum : 1;
    ag_module *m = dt_model(1000 + (uint64_t)rank, cfg);
    if (!m) return ag_last_status();
    ag_status st = AG_OK;
    ag_ddp *ddp = NULL;
    if (comm) {
        ag_ddp_options o = ag_ddp_defaults();
        o.overlap = cfg->overlap;
        o.find_unused_parameters = cfg->unused && !cfg->static_graph;
        o.static_graph = cfg->static_graph;
        if (cfg->bucket_cap) o.bucket_cap_bytes = cfg->bucket_cap;
        if (cfg->batch_norm && ag_convert_sync_batch_norm(m, comm) != 1) st = ag_last_status();
        if (!st) ddp = ag_ddp_new(m, comm, &o);
        if (!ddp) st = ag_last_status();
        if (buckets) *buckets = ag_ddp_num_buckets(ddp);
    }
    ag_tensor *params[DT_MAX_PARAMS];
    int np = ag_module_parameters(m, params, DT_MAX_PARAMS);
    ag_optimizer *opt = NULL;
    if (!st) {
        if (cfg->adam) {
            ag_adam_options o = ag_adam_defaults();
            o.lr = 0.05;
            opt = ag_adam_new(params, np, &o);
        } else {
            ag_sgd_options o = ag_sgd_defaults();
            o.lr = 0.2, o.momentum = 0.9;
            opt = ag_sgd_new(params, np, &o);
        }
        if (!opt) st = ag_last_status();
    }
    double *xs = malloc(sizeof(double) * (size_t)(rows * DT_IN)), *ys = malloc(sizeof(double) * (size_t)(rows * DT_OUT));
    for (int step = 0; !st && step < cfg->steps; step++) {
        ag_optimizer_zero_grad(opt);
        for (int k = 0; !st && k < micro; k++) {
            int64_t first = comm ? ((int64_t)k * cfg->world + rank) * cfg->batch : 0;
            for (int64_t i = 0; i < rows; i++) dt_sample(first + i, xs + i * DT_IN, ys + i * DT_OUT);
            bool sync = k == micro - 1;
            if (!sync) ag_ddp_no_sync_begin(ddp);
            ag_scope_begin();
            ag_tensor *x = ag_from_data(xs, AG_SHAPE(rows, DT_IN), AG_F64);
            ag_tensor *y = ag_from_data(ys, AG_SHAPE(rows, DT_OUT), AG_F64);
            ag_tensor *pred = ddp ? ag_ddp_forward(ddp, x) : ag_module_forward(m, x);
            ag_tensor *loss = ag_div_scalar(ag_mse_loss(pred, y, NULL), micro);
            st = loss ? ag_backward(loss) : ag_last_status();
            ag_scope_end();
            if (!sync) ag_ddp_no_sync_end(ddp);
        }
        if (!st) st = ag_optimizer_step(opt);
    }
    free(xs);
    free(ys);
    *n = 0;
    ag_state_dict *sd = ag_state_dict_new();
    if (!st) st = ag_module_state_dict(m, sd);
    for (int i = 0; !st && i < ag_state_dict_size(sd); i++) {
        ag_tensor *t = ag_state_dict_tensor(sd, i);
        if (*n + ag_numel(t) > cap) break;
        st = ag_copy_to(t, out + *n, cap - *n, AG_F64);
        *n += ag_numel(t);
    }
    ag_state_dict_free(sd);
    ag_optimizer_free(opt);
    ag_ddp_free(ddp);
    ag_module_free(m);
    return st;
}

/* Exact resume: a model with dropout (each rank its own generator stream), a
 * sharded shuffled loader and SGD with momentum, trained `steps` steps over
 * epochs of 40 samples.  save_at > 0: a checkpoint (with comm: every rank's
 * generator, rank 0 writing) after that many steps; resume: first loads path and
 * continues from its step.  The parameters end in out. */
static ag_status dist_resume_run(ag_comm *comm, const char *path, int save_at, bool resume, int steps, double *out,
                                 int64_t cap, int64_t *n) {
    int rank = comm ? ag_comm_rank(comm) : 0, world = comm ? ag_comm_size(comm) : 1;
    ag_manual_seed(2000 + (uint64_t)rank);
    ag_module *m = AG_SEQUENTIAL(ag_nn_linear(DT_IN, DT_HIDDEN, true), ag_nn_tanh(), ag_nn_dropout(0.3),
                                 ag_nn_linear(DT_HIDDEN, DT_OUT, true));
    ag_status st = ag_module_to_dtype(m, AG_F64);
    ag_ddp *ddp = !st && comm ? ag_ddp_new(m, comm, NULL) : NULL;
    if (comm && !ddp) st = ag_last_status();
    double xs[40 * DT_IN], ys[40 * DT_OUT];
    for (int i = 0; i < 40; i++) dt_sample(i, xs + i * DT_IN, ys + i * DT_OUT);
    ag_tensor *x = ag_from_data(xs, AG_SHAPE(40, DT_IN), AG_F64), *y = ag_from_data(ys, AG_SHAPE(40, DT_OUT), AG_F64);
    ag_dataset *ds = ag_tensor_dataset(x, y);
    ag_loader *l = ag_loader_new(ds, &(ag_loader_options){.batch_size = 3, .shuffle = true, .seed = 5,
                                                          .num_replicas = world, .rank = rank});
    ag_tensor *params[DT_MAX_PARAMS];
    int np = ag_module_parameters(m, params, DT_MAX_PARAMS);
    ag_sgd_options so = ag_sgd_defaults();
    so.lr = 0.1, so.momentum = 0.9;
    ag_optimizer *opt = ag_sgd_new(params, np, &so);
    ag_checkpoint ck = {.model = m, .optimizer = opt, .loader = l, .comm = comm};
    if (!st && (!l || !opt)) st = ag_last_status();
    if (!st && resume) st = ag_checkpoint_load(&ck, path);
    for (int64_t step = ck.step; !st && step < steps; step++) {
        ag_scope_begin();
        ag_tensor *xb, *yb;
        int got = ag_loader_next(l, &xb, &yb);
        if (got == 0) got = ag_loader_next(l, &xb, &yb); /* a new epoch */
        ag_optimizer_zero_grad(opt);
        ag_tensor *pred = got == 1 ? (ddp ? ag_ddp_forward(ddp, xb) : ag_module_forward(m, xb)) : NULL;
        ag_tensor *loss = ag_mse_loss(pred, yb, NULL);
        st = loss ? ag_backward(loss) : ag_last_status();
        if (!st) st = ag_optimizer_step(opt);
        ag_scope_end();
        ck.step = step + 1;
        if (!st && ck.step == save_at) st = ag_checkpoint_save(&ck, path);
    }
    *n = 0;
    for (int i = 0; !st && i < np && *n + ag_numel(params[i]) <= cap; i++) {
        st = ag_copy_to(params[i], out + *n, cap - *n, AG_F64);
        *n += ag_numel(params[i]);
    }
    ag_optimizer_free(opt);
    ag_loader_free(l);
    ag_dataset_free(ds);
    ag_release(x);
    ag_release(y);
    ag_ddp_free(ddp);
    ag_module_free(m);
    return st;
}

/* The largest |a - b| over n values. */
static double dt_max_diff(const double *a, const double *b, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    return worst;
}

/* ---- bucket rebuilding, in exact arithmetic -------------------------------------------------- */
/* A model whose children are registered in another order than their use:
 * head(mid(body(x))) with "mid" = Linear(3, 3) (parameters 0, 1), "head" =
 * Linear(3, 2) (2, 3) and "body" = Linear(4, 3) (4, 5).  Backward produces the
 * gradients in the order 2 3 0 1 4 5, so the wrapper's first guess (from the
 * last parameter back: 5 4 3 2 1 0) is wrong, and rebuilt buckets of that order
 * hold parameters that are not neighbours in the flat buffer (staged).  Weights, data and learning rate are dyadic
 * rationals of few bits, rows and ranks powers of 2: every sum of the run is
 * exact in float64 for 2 steps (a third needs more than 53 bits), so W ranks
 * give one process's bits, whatever the summation order, and a gradient a bucket
 * put in the wrong place would show.  The second step runs on rebuilt buckets. */
enum { DTX_ROWS = 8, DTX_IN = 4, DTX_HID = 3, DTX_OUT = 2, DTX_PARAMS = 6 };

static ag_tensor *dtx_forward(ag_module *m, ag_tensor *x) {
    ag_tensor *h = ag_module_forward(ag_module_get_child(m, "body"), x);
    return ag_module_forward(ag_module_get_child(m, "head"), ag_module_forward(ag_module_get_child(m, "mid"), h));
}
static const ag_module_type dtx_type = {"Swapped", dtx_forward, NULL, NULL};

typedef struct dtx_cfg {
    int64_t bucket_cap; /* bytes */
    bool overlap, static_graph;
    int steps;
} dtx_cfg;

typedef struct dtx_result {
    double values[64];          /* the parameters after training */
    int64_t n;
    int arrival[DTX_PARAMS];    /* the order the first backward's gradients arrived in (seen by hooks) */
    int narrival;
    int before[DTX_PARAMS], nbefore[DTX_PARAMS], buckets_before; /* buckets at construction: */
    int after[DTX_PARAMS], nafter[DTX_PARAMS], buckets_after;    /* the lists one after the other, sizes */
} dtx_result;

typedef struct dtx_seen_arg {
    dtx_result *r;
    int index;
    bool *recording;
} dtx_seen_arg;

/* A post-accumulate-grad hook: the order gradients arrive in, while recording. */
static ag_status dtx_seen(ag_tensor *p, void *user) {
    (void)p;
    dtx_seen_arg *a = user;
    if (*a->recording && a->r->narrival < DTX_PARAMS) a->r->arrival[a->r->narrival++] = a->index;
    return AG_OK;
}

/* The buckets of d, their lists one after the other in list and their sizes in
 * sizes; returns their count. */
static int dtx_buckets(const ag_ddp *d, int *list, int *sizes) {
    int nb = ag_ddp_num_buckets(d), at = 0;
    for (int b = 0; b < nb && b < DTX_PARAMS; b++) {
        sizes[b] = ag_ddp_bucket_indices(d, b, list + at, DTX_PARAMS - at);
        at += sizes[b] > 0 ? sizes[b] : 0;
    }
    return nb;
}

/* Trains the swapped model for cfg->steps SGD steps (lr 1/8) as rank
 * ag_comm_rank(comm) of world, each rank DTX_ROWS / world of the DTX_ROWS rows
 * (comm NULL: one process on all of them), and fills *res. */
static ag_status dtx_run(ag_comm *comm, int world, const dtx_cfg *cfg, dtx_result *res) {
    memset(res, 0, sizeof *res);
    int rank = comm ? ag_comm_rank(comm) : 0;
    int64_t rows = comm ? DTX_ROWS / world : DTX_ROWS;
    ag_module *m = ag_module_new(&dtx_type, NULL);
    ag_module_add_child(m, "mid", ag_nn_linear(DTX_HID, DTX_HID, true));
    ag_module_add_child(m, "head", ag_nn_linear(DTX_HID, DTX_OUT, true));
    ag_module_add_child(m, "body", ag_nn_linear(DTX_IN, DTX_HID, true));
    ag_status st = ag_module_to_dtype(m, AG_F64);
    ag_tensor *params[DTX_PARAMS];
    int np = st ? 0 : ag_module_parameters(m, params, DTX_PARAMS);
    for (int i = 0; !st && i < np; i++) { /* -1/2, 0 or 1/2, different on every rank (rank 0's win) */
        double v[12];
        for (int k = 0; k < ag_numel(params[i]); k++) v[k] = (double)((k * 5 + i * 3 + rank) % 3 - 1) / 2;
        ag_no_grad_begin();
        ag_tensor *src = ag_from_data(v, ag_shape_of(params[i]), AG_F64);
        if (!ag_copy_(params[i], src)) st = ag_last_status();
        ag_release(src);
        ag_no_grad_end();
    }
    bool recording = true;
    dtx_seen_arg seen[DTX_PARAMS];
    ag_hook_handle hooks[DTX_PARAMS];
    memset(hooks, 0, sizeof hooks);
    for (int i = 0; !st && i < np; i++) {
        seen[i] = (dtx_seen_arg){res, i, &recording};
        st = ag_register_post_accumulate_grad_hook(params[i], dtx_seen, &seen[i], &hooks[i]);
    }
    ag_ddp *ddp = NULL;
    if (!st && comm) {
        ag_ddp_options o = ag_ddp_defaults();
        o.bucket_cap_bytes = cfg->bucket_cap, o.overlap = cfg->overlap, o.static_graph = cfg->static_graph;
        ddp = ag_ddp_new(m, comm, &o);
        if (!ddp) st = ag_last_status();
        else res->buckets_before = dtx_buckets(ddp, res->before, res->nbefore);
    }
    ag_sgd_options so = ag_sgd_defaults();
    so.lr = 0.125;
    ag_optimizer *opt = st ? NULL : ag_sgd_new(params, np, &so);
    if (!st && !opt) st = ag_last_status();
    double xs[DTX_ROWS * DTX_IN], ys[DTX_ROWS * DTX_OUT];
    for (int64_t i = 0; i < rows; i++) { /* x halves in [-1, 1], y -1, 0 or 1 */
        int64_t row = i + (comm ? rank * rows : 0);
        for (int j = 0; j < DTX_IN; j++) xs[i * DTX_IN + j] = (double)((row * 3 + j * 5) % 5 - 2) / 2;
        for (int j = 0; j < DTX_OUT; j++) ys[i * DTX_OUT + j] = (double)((row + 2 * j) % 3 - 1);
    }
    for (int step = 0; !st && step < cfg->steps; step++) {
        ag_scope_begin();
        ag_optimizer_zero_grad(opt);
        ag_tensor *x = ag_from_data(xs, AG_SHAPE(rows, DTX_IN), AG_F64);
        ag_tensor *y = ag_from_data(ys, AG_SHAPE(rows, DTX_OUT), AG_F64);
        ag_tensor *loss = ag_mse_loss(ddp ? ag_ddp_forward(ddp, x) : ag_module_forward(m, x), y, NULL);
        st = loss ? ag_backward(loss) : ag_last_status();
        recording = false;
        if (!st) st = ag_optimizer_step(opt);
        ag_scope_end();
    }
    if (!st && ddp) {
        /* the rebuild happens at the forward after the first backward */
        res->buckets_after = dtx_buckets(ddp, res->after, res->nafter);
    }
    for (int i = 0; !st && i < np; i++) {
        st = ag_copy_to(params[i], res->values + res->n, 64 - res->n, AG_F64);
        res->n += ag_numel(params[i]);
    }
    for (int i = 0; i < np; i++) ag_hook_remove(hooks[i]);
    ag_optimizer_free(opt);
    ag_ddp_free(ddp);
    ag_module_free(m);
    return st;
}

#endif

/*
 * train/checkpoint.c - one safetensors file holding everything a training loop
 * needs to continue exactly: model, optimizer, scheduler, loader, early
 * stopping, curves, the global generator and the loop's counters.  Saving is
 * atomic (ag_save_safetensors); loading is all or nothing: every part is checked
 * before any is changed.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "core/internal.h"
#include "io/state.h"
#include "agrad/train.h"
#include "agrad/ops.h"
#include "data/internal.h"
#include "nn/internal.h"
#include "optim/internal.h"
#include "train/internal.h"

/* Adds every entry of src to dst under prefix + its name (names of any length, never cut). */
static ag_status add_prefixed(ag_state_dict *dst, const ag_state_dict *src, const char *prefix) {
    ag_status st = AG_OK;
    for (int i = 0; !st && i < ag_state_dict_size(src); i++) {
        const char *own = ag_state_dict_name(src, i);
        char *name = ag__alloc(strlen(prefix) + strlen(own) + 1);
        if (!name) return ag__fail(AG_ERR_NOMEM, "checkpoint_save: out of memory");
        strcat(strcpy(name, prefix), own);
        st = ag_state_dict_set(dst, name, ag_state_dict_tensor(src, i));
        ag__free(name);
    }
    return st;
}

/* A new dict sharing the entries of src whose names start with prefix, without it. */
static ag_state_dict *strip_prefix(const ag_state_dict *src, const char *prefix) {
    ag_state_dict *sd = ag_state_dict_new();
    size_t len = strlen(prefix);
    for (int i = 0; sd && i < ag_state_dict_size(src); i++) {
        const char *name = ag_state_dict_name(src, i);
        if (strncmp(name, prefix, len) == 0 && name[len] && ag_state_dict_set(sd, name + len, ag_state_dict_tensor(src, i))) {
            ag_state_dict_free(sd);
            sd = NULL;
        }
    }
    return sd ? sd : ag__fail_null(AG_ERR_NOMEM, "checkpoint_load: out of memory");
}

/* The parts a checkpoint can hold, in the order they are saved and restored. */
enum { MODEL, OPTIMIZER, SCHEDULER, LOADER, EARLY_STOPPING, HISTORY, RNG, NPARTS };

static bool present(const ag_checkpoint *c, int part) {
    switch (part) {
    case MODEL: return c->model;
    case OPTIMIZER: return c->optimizer;
    case SCHEDULER: return c->scheduler;
    case LOADER: return c->loader;
    case EARLY_STOPPING: return c->early_stopping;
    case HISTORY: return c->history;
    default: return true;
    }
}

/* "rng.ranks": every rank's generator state, row r rank r's (a collective). */
static ag_status gather_generators(const ag_checkpoint *c, ag_tensor *mine, ag_state_dict *sd) {
    int size = ag_comm_size(c->comm), rank = ag_comm_rank(c->comm);
    ag_tensor *all = ag_zeros(AG_SHAPE(size, 4), AG_I64);
    if (!all) return ag_last_status();
    memcpy((int64_t *)ag__ptr(all) + 4 * rank, ag__ptr(mine), 4 * sizeof(int64_t));
    ag_status st = ag_comm_all_reduce_(c->comm, all); /* the other rows are zeros: a sum gathers */
    return st ? st : ag_state_dict_set(sd, "rng.ranks", all);
}

/* Writes the state of one part into sd, under the names of the checkpoint format;
 * gather: with a communicator, also every rank's generator (a collective). */
static ag_status save_part(const ag_checkpoint *c, int part, ag_state_dict *sd, bool gather) {
    ag_state_dict *tmp = NULL;
    ag_status st = AG_OK;
    switch (part) {
    case MODEL:
    case OPTIMIZER:
        if (!(tmp = ag_state_dict_new())) return ag__fail(AG_ERR_NOMEM, "checkpoint_save: out of memory");
        st = part == MODEL ? ag_module_state_dict(c->model, tmp) : ag_optimizer_state_dict(c->optimizer, tmp);
        if (!st) st = add_prefixed(sd, tmp, part == MODEL ? "model." : "optimizer.");
        ag_state_dict_free(tmp);
        return st;
    case SCHEDULER: return ag_scheduler_state_dict(c->scheduler, sd);
    case LOADER: return ag_loader_state_dict(c->loader, sd);
    case EARLY_STOPPING: return ag_early_stopping_state_dict(c->early_stopping, sd);
    case HISTORY: return ag_history_state_dict(c->history, sd);
    default: {
        ag_tensor *rng = ag_get_rng_state(); /* owned by the caller's scope */
        ag_status st = rng ? ag_state_dict_set(sd, "rng.global", rng) : ag_last_status();
        return !st && gather && c->comm ? gather_generators(c, rng, sd) : st;
    }
    }
}

/* Checks (check) or restores one part from sd, as save_part wrote it; each part changes
 * nothing on failure, and a check changes nothing at all. */
static ag_status load_part(ag_checkpoint *c, int part, const ag_state_dict *sd, bool check) {
    ag_state_dict *sub = NULL;
    ag_status st;
    switch (part) {
    case MODEL:
    case OPTIMIZER:
        if (!(sub = strip_prefix(sd, part == MODEL ? "model." : "optimizer."))) return ag_last_status();
        if (part == MODEL)
            st = check ? ag__module_check_state_dict(c->model, sub, true) : ag_module_load_state_dict(c->model, sub, true);
        else
            st = check ? ag__optimizer_check_state_dict(c->optimizer, sub) : ag_optimizer_load_state_dict(c->optimizer, sub);
        ag_state_dict_free(sub);
        return st;
    case SCHEDULER:
        return check ? ag__scheduler_check_state_dict(c->scheduler, sd) : ag_scheduler_load_state_dict(c->scheduler, sd);
    case LOADER: return check ? ag__loader_check_state_dict(c->loader, sd) : ag_loader_load_state_dict(c->loader, sd);
    case EARLY_STOPPING:
        return check ? ag__early_stopping_check_state_dict(c->early_stopping, sd)
                     : ag_early_stopping_load_state_dict(c->early_stopping, sd);
    case HISTORY: return check ? ag__history_check_state_dict(c->history, sd) : ag_history_load_state_dict(c->history, sd);
    default: {
        const ag_tensor *rng = ag_state_dict_get(sd, "rng.global");
        if (!rng) return ag_last_status();
        const ag_tensor *ranks = c->comm ? ag_state_dict_get(sd, "rng.ranks") : NULL;
        if (c->comm && ranks) { /* this rank's own row, when the dict has the rows (backups do not) */
            char s[AG_SHAPE_STR];
            int size = ag_comm_size(c->comm);
            if (ranks->dtype != AG_I64 || ranks->ndim != 2 || ranks->shape[0] != size || ranks->shape[1] != 4)
                return ag__fail(AG_ERR_SHAPE, "checkpoint_load: rng.ranks is %s %s; %d ranks need int64 [%d, 4]",
                                ag_dtype_name(ranks->dtype), ag__tshape(s, ranks), size, size);
            if ((st = ag_scope_begin())) return st;
            rng = ag_select((ag_tensor *)ranks, 0, ag_comm_rank(c->comm));
            st = !rng ? ag_last_status() : check ? ag__rng_check_state(rng) : ag_set_rng_state(rng);
            ag_scope_end();
            return st;
        }
        return check ? ag__rng_check_state(rng) : ag_set_rng_state(rng);
    }
    }
}

ag_status ag_checkpoint_save(const ag_checkpoint *c, const char *path) {
    if (!c || !c->model || !path) return ag__fail(AG_ERR_ARG, "checkpoint_save: NULL checkpoint, model or path");
    ag_state_dict *sd = ag_state_dict_new();
    if (!sd) return ag__fail(AG_ERR_NOMEM, "checkpoint_save: out of memory");
    ag_status st = ag_scope_begin();
    for (int part = 0; !st && part < NPARTS; part++)
        if (present(c, part)) st = save_part(c, part, sd, true);
    if (!st) st = ag_state_dict_set_scalar(sd, "checkpoint.epoch", (double)c->epoch);
    if (!st) st = ag_state_dict_set_scalar(sd, "checkpoint.step", (double)c->step);
    if (!st && ag_comm_rank(c->comm) <= 0) st = ag_save_safetensors(sd, path); /* rank 0, or no comm (-1) */
    if (c->comm) { /* every rank returns rank 0's status, once the file is there */
        ag_tensor *status = ag_full(AG_SHAPE(1), ag_comm_rank(c->comm) == 0 ? (double)st : 0.0, AG_I64);
        ag_status sent = status ? ag_comm_broadcast_(c->comm, status, 0) : ag_last_status();
        ag_status root = sent ? sent : (ag_status)*(int64_t *)ag__ptr(status);
        if (root && !st) st = ag__fail(root, "checkpoint_save: rank 0 could not write %s", path);
        if (sent && !st) st = sent;
    }
    ag_scope_end();
    ag_state_dict_free(sd);
    return st;
}

ag_status ag_checkpoint_load(ag_checkpoint *c, const char *path) {
    if (!c || !c->model || !path) return ag__fail(AG_ERR_ARG, "checkpoint_load: NULL checkpoint, model or path");
    ag_state_dict *sd = ag_load_safetensors(path);
    if (!sd) return ag_last_status();
    double epoch = 0, step = 0;
    ag_status st = ag__sd_number("checkpoint_load", sd, "checkpoint.epoch", (ag__range)AG__COUNT, &epoch);
    if (!st) st = ag__sd_number("checkpoint_load", sd, "checkpoint.step", (ag__range)AG__COUNT, &step);
    /* Every part is checked before any is changed: damaged or unfitting state changes nothing. */
    for (int part = 0; !st && part < NPARTS; part++)
        if (present(c, part)) st = load_part(c, part, sd, true);
    /* Then each part's current state is kept, to put back if restoring a later part runs
     * out of memory (the only way it can fail now). */
    ag_state_dict *backup[NPARTS] = {0};
    bool scoped = !st && !(st = ag_scope_begin()); /* owns the generator state read below */
    for (int part = 0; !st && part < NPARTS; part++) {
        if (!present(c, part)) continue;
        ag_state_dict *mine = ag_state_dict_new();
        st = mine ? save_part(c, part, mine, false) : ag__fail(AG_ERR_NOMEM, "checkpoint_load: out of memory");
        if (!st && !(backup[part] = ag__state_dict_copy("checkpoint_load", mine))) st = ag_last_status();
        ag_state_dict_free(mine);
    }
    int done = 0; /* parts tried */
    for (; !st && done < NPARTS; done++)
        if (present(c, done)) st = load_part(c, done, sd, false);
    if (st && done > 0) { /* undo the parts restored before the one that failed, keeping its message */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ag_last_error());
        for (int part = 0; part < done - 1; part++)
            if (backup[part]) load_part(c, part, backup[part], false);
        ag__fail(st, "%s", msg);
    } else if (!st) {
        c->epoch = (int64_t)epoch;
        c->step = (int64_t)step;
    }
    if (scoped) ag_scope_end();
    for (int part = 0; part < NPARTS; part++) ag_state_dict_free(backup[part]);
    ag_state_dict_free(sd);
    return st;
}

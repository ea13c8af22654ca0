/*
 * train/progress.c - the progress of a training run: a bar redrawn in place on
 * a terminal, plain per-epoch lines in a log, the epoch's mean loss and speed.
 */
#include <math.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include "core/internal.h"
#include "agrad/train.h"

struct ag_progress {
    FILE *out;
    ag_progress_mode mode;
    int64_t epochs, steps;  /* planned */
    int64_t epoch, step;    /* current epoch (1-based), steps done in it */
    int64_t run_steps;      /* steps done since ag_progress_new, for the ETA */
    double t0, epoch_t0, last_draw;
    double loss_sum;        /* Σ loss·samples over the epoch */
    int64_t samples;        /* samples of the epoch */
    double last_loss;       /* mean loss of the last finished epoch */
    bool line_open;         /* a bar is drawn without its newline */
};

double ag_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ag_progress *ag_progress_new(FILE *out, int64_t epochs, int64_t steps_per_epoch, ag_progress_mode mode) {
    if (epochs < 1 || steps_per_epoch < 1)
        return ag__fail_null(AG_ERR_ARG, "progress_new: need at least one epoch and one step, got %lld and %lld",
                             (long long)epochs, (long long)steps_per_epoch);
    if (mode < AG_PROGRESS_AUTO || mode > AG_PROGRESS_QUIET)
        return ag__fail_null(AG_ERR_ARG, "progress_new: unknown mode %d", (int)mode);
    ag_progress *p = ag__calloc(sizeof *p);
    if (!p) return ag__fail_null(AG_ERR_NOMEM, "progress_new: out of memory");
    p->out = out ? out : stdout;
    if (mode == AG_PROGRESS_AUTO) mode = isatty(fileno(p->out)) ? AG_PROGRESS_BAR : AG_PROGRESS_LINES;
    p->mode = mode;
    p->epochs = epochs;
    p->steps = steps_per_epoch;
    p->epoch = 1;
    p->t0 = p->epoch_t0 = ag_seconds();
    p->last_draw = -INFINITY;
    p->last_loss = NAN;
    return p;
}

void ag_progress_set_epoch(ag_progress *p, int64_t epoch) {
    if (p && epoch >= 1) p->epoch = epoch;
}

/* "52.1k" */
static void fmt_rate(char *buf, size_t size, double r) {
    if (r >= 1e6) snprintf(buf, size, "%.1fM", r / 1e6);
    else if (r >= 1e3) snprintf(buf, size, "%.1fk", r / 1e3);
    else snprintf(buf, size, "%.0f", r);
}

/* "1:02:03" or "2:03" */
static void fmt_duration(char *buf, size_t size, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

static double epoch_rate(const ag_progress *p, double now) {
    double dt = now - p->epoch_t0;
    return dt > 0 ? (double)p->samples / dt : 0;
}

static void draw_bar(ag_progress *p, double now) {
    enum { WIDTH = 24 };
    char bar[WIDTH + 1], rate[32], eta[32];
    int64_t fill = p->step * WIDTH / p->steps;
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
    bar[WIDTH] = '\0';
    int64_t left = (p->epochs - p->epoch) * p->steps + (p->steps - p->step);
    fmt_rate(rate, sizeof rate, epoch_rate(p, now));
    fmt_duration(eta, sizeof eta, (now - p->t0) / (double)p->run_steps * (double)(left > 0 ? left : 0));
    fprintf(p->out, "\repoch %lld/%lld [%s] %lld/%lld  loss %.4f  %s samples/s  ETA %s\033[K", (long long)p->epoch,
            (long long)p->epochs, bar, (long long)p->step, (long long)p->steps,
            p->samples ? p->loss_sum / (double)p->samples : NAN, rate, eta);
    fflush(p->out);
    p->line_open = true;
    p->last_draw = now;
}

void ag_progress_step(ag_progress *p, double loss, int64_t samples) {
    if (!p) return;
    if (samples < 0) samples = 0;
    p->step++;
    p->run_steps++;
    p->loss_sum += loss * (double)samples;
    p->samples += samples;
    if (p->mode != AG_PROGRESS_BAR) return;
    double now = ag_seconds();
    if (now - p->last_draw >= 0.1 || p->step == p->steps) draw_bar(p, now);
}

void ag_progress_epoch_end(ag_progress *p, const char *extra) {
    if (!p) return;
    double now = ag_seconds();
    p->last_loss = p->samples ? p->loss_sum / (double)p->samples : NAN;
    if (p->mode == AG_PROGRESS_BAR || p->mode == AG_PROGRESS_LINES) {
        char rate[32];
        fmt_rate(rate, sizeof rate, epoch_rate(p, now));
        fprintf(p->out, "%sepoch %lld/%lld  loss %.4f  %s samples/s  %.2f s%s%s%s\n", p->line_open ? "\r" : "",
                (long long)p->epoch, (long long)p->epochs, p->last_loss, rate, now - p->epoch_t0, extra ? "  " : "",
                extra ? extra : "", p->line_open ? "\033[K" : "");
        fflush(p->out);
        p->line_open = false;
    }
    p->epoch++;
    p->step = 0;
    p->loss_sum = 0;
    p->samples = 0;
    p->epoch_t0 = now;
}

double ag_progress_epoch_loss(const ag_progress *p) { return p ? p->last_loss : NAN; }

double ag_progress_seconds(const ag_progress *p) { return p ? ag_seconds() - p->t0 : 0; }

void ag_progress_free(ag_progress *p) {
    if (!p) return;
    if (p->line_open) {
        fputc('\n', p->out);
        fflush(p->out);
    }
    ag__free(p);
}

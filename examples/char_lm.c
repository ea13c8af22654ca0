/*
 * char_lm.c - a character-level language model of words: Embedding(V, E), a
 * recurrent layer (LSTM or GRU, H units, --layers deep) or a causal Transformer
 * encoder, Linear(H or E, V), trained
 * with cross-entropy to predict each next character of a word from the ones
 * before it, then sampling new words from it.  A word w1..wn is the sequence
 * "^ w1 .. wn" with the targets "w1 .. wn $"; ^ and $ are one token (index 0),
 * so the loss counts the end of the word too.  The validation loss is in nats
 * per character (per target, the end included).
 *
 * The words come from any word list, one word a line (Debian's wamerican,
 * /usr/share/dict/american-english, by default; datasets/words_sample.txt is a
 * small sample of it for tests).  --filter alpha keeps the words of lower-case
 * ASCII letters; the vocabulary is the bytes seen.  Every 10th word (in file
 * order) is held out for validation, so the split needs no random generator and
 * is the same in the PyTorch twin, char_lm.py, which has the same settings.
 *
 * --model picks the sequence model: lstm or gru (the recurrent layers of
 * docs/sequence.md), or transformer: sinusoidal positional encodings added to the
 * embeddings, --layers pre-norm TransformerEncoderLayers (d_model E, --heads heads,
 * feedforward H = --hidden, relu, no dropout) under the causal mask, a final
 * LayerNorm.  model_forward below maps [B, T] tokens to [B, T, V] logits either way.
 *
 *     ./build/examples/char_lm --plot char_lm.svg
 *
 * Ends with one line: val_loss=... train_loss=... train_s=... (wall clock) train_cpu_s=...
 * (the process's CPU time: on a shared machine the fairer figure) words=... novel=...
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <agrad/agrad.h>
#include "args.h"

static const char *words_path = "/usr/share/dict/american-english", *filter = "alpha", *model_kind = "lstm",
                  *plot = "", *curves_csv = "", *progress = "auto", *out_dir = "";
static int embed_dim = 32, hidden = 128, layers = 1, heads = 4, epochs = 5, batch = 64, seed = 0, samples = 20,
           top_k = 0, max_len = 24, limit = 0, threads = 1;
static double lr = 3e-3, clip = 1.0, temperature = 1.0;
static arg args[] = {
    {"words", 's', &words_path, "word list, one word a line"},
    {"filter", 's', &filter, "alpha: only words of lower-case ASCII letters; all: every line {alpha|all}"},
    {"limit", 'i', &limit, "use only the first N words after filtering (0: all)"},
    {"model", 's', &model_kind, "sequence model {lstm|gru|transformer}"},
    {"embed", 'i', &embed_dim, "embedding size (the Transformer's d_model)"},
    {"hidden", 'i', &hidden, "hidden units of the recurrent layer (the Transformer's feedforward)"},
    {"layers", 'i', &layers, "recurrent or Transformer layers"},
    {"heads", 'i', &heads, "attention heads of the Transformer"},
    {"epochs", 'i', &epochs, "epochs"},
    {"batch", 'i', &batch, "words per batch"},
    {"lr", 'd', &lr, "Adam's learning rate"},
    {"clip", 'd', &clip, "gradient norm clipping (0: none)"},
    {"seed", 'i', &seed, "seed of the weights, the shuffling and the sampling"},
    {"samples", 'i', &samples, "words to generate at the end"},
    {"temperature", 'd', &temperature, "sampling temperature (0: greedy)"},
    {"top-k", 'i', &top_k, "sample among the k most likely characters (0: all)"},
    {"max-len", 'i', &max_len, "longest word kept and generated"},
    {"curves", 's', &curves_csv, "CSV file for the per-epoch losses"},
    {"plot", 's', &plot, "SVG file drawing the per-epoch losses"},
    {"out", 's', &out_dir, "directory for char_lm.svg (the plot), when given"},
    {"threads", 'i', &threads, "threads (0: the library's default); one is fastest for these small products"},
    {"progress", 's', &progress, "auto: a bar on a terminal, lines otherwise {auto|bar|lines|quiet}"},
};
#define IS(option, value) (strcmp(option, value) == 0)

/* ---- the words ------------------------------------------------------------------------- */
typedef struct corpus {
    char **words; /* train words first, then validation words */
    int64_t ntrain, nval;
    int vocab;            /* tokens: 0 is ^/$, then the bytes seen, in byte order */
    int token_of[256];    /* byte -> token, 0 when unseen */
    unsigned char byte_of[256];
} corpus;

static bool keep_word(const char *w, size_t len) {
    if (len == 0 || (int)len > max_len) return false;
    if (IS(filter, "all")) return true;
    for (size_t i = 0; i < len; i++)
        if (w[i] < 'a' || w[i] > 'z') return false;
    return true;
}

/* Reads every line of path (any line ending), keeps those keep_word accepts, splits
 * them 9:1 by position and builds the vocabulary.  Returns 0, or 1 with a message. */
static int read_words(const char *path, corpus *c) {
    FILE *f = fopen(path, "rb");
    if (!f) return fprintf(stderr, "char_lm: cannot open %s (install Debian's wamerican, or pass --words)\n", path), 1;
    char line[4096];
    int64_t n = 0, cap = 0, nval = 0;
    char **all = NULL;
    memset(c, 0, sizeof *c);
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        if (!keep_word(line, len)) continue;
        if (limit > 0 && n >= limit) break;
        if (n == cap) {
            char **grown = realloc(all, sizeof *all * (size_t)(cap = cap ? 2 * cap : 1024));
            if (!grown) break;
            all = grown;
        }
        if (!(all[n] = malloc(len + 1))) break;
        memcpy(all[n++], line, len + 1);
        for (size_t i = 0; i < len; i++) c->token_of[(unsigned char)line[i]] = 1;
    }
    fclose(f);
    c->words = malloc(sizeof *c->words * (size_t)(n + 1));
    if (!c->words || n < 10) {
        for (int64_t i = 0; i < n; i++) free(all[i]);
        free(all);
        return fprintf(stderr, "char_lm: %s has %lld usable words (at least 10 needed)\n", path, (long long)n), 1;
    }
    for (int64_t i = 0; i < n; i++) nval += i % 10 == 0;
    int64_t tr = 0, va = n - nval;
    for (int64_t i = 0; i < n; i++) c->words[i % 10 == 0 ? va++ : tr++] = all[i]; /* every 10th to validation */
    free(all);
    c->ntrain = n - nval, c->nval = nval;
    c->vocab = 1;
    for (int b = 1; b < 256; b++)
        if (c->token_of[b]) c->byte_of[c->vocab] = (unsigned char)b, c->token_of[b] = c->vocab++;
    return 0;
}

/* The batch of words order[0..n): inputs "^ w" [n, T] and targets "w $" [n, T] (int64),
 * T = the longest word + 1, targets padded with -100 (ignored by the loss), inputs with 0. */
static void make_batch(const corpus *c, const int64_t *order, int64_t n, ag_tensor **x, ag_tensor **y) {
    int64_t T = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t len = (int64_t)strlen(c->words[order[i]]) + 1;
        if (len > T) T = len;
    }
    *x = ag_zeros(AG_SHAPE(n, T), AG_I64);
    *y = ag_full(AG_SHAPE(n, T), -100, AG_I64);
    if (!*x || !*y) return;
    int64_t *xp = ag_data(*x), *yp = ag_data(*y);
    for (int64_t i = 0; i < n; i++) {
        const char *w = c->words[order[i]];
        int64_t len = (int64_t)strlen(w);
        for (int64_t t = 0; t < len; t++) {
            int tok = c->token_of[(unsigned char)w[t]];
            xp[i * T + t + 1] = tok;
            yp[i * T + t] = tok;
        }
        yp[i * T + len] = 0; /* the end of the word */
    }
}

/* ---- the model ------------------------------------------------------------------------------ */
static ag_tensor *positions; /* the Transformer's positional encodings [max_len + 1, E], a constant */

/* ModuleDict {embed, rnn or encoder, head}: state-dict names as the twin's (embed.weight,
 * rnn.weight_ih_l0 or encoder.layers.0.self_attn.in_proj_weight, ...). */
static ag_module *make_model(int vocab) {
    if (IS(model_kind, "transformer")) {
        positions = ag_sinusoidal_positional_encoding(max_len + 1, embed_dim, AG_F32);
        ag_module *layer = ag_nn_transformer_encoder_layer(embed_dim, heads, hidden, 0, "relu", 1e-5, true, true);
        ag_module *encoder = ag_nn_transformer_encoder(layer, layers, ag_nn_layer_norm(AG_SHAPE(embed_dim), 1e-5, true));
        return ag_nn_module_dict(3, (const char *[]){"embed", "encoder", "head"},
                                 (ag_module *[]){ag_nn_embedding(vocab, embed_dim, AG_NO_PADDING_IDX), encoder,
                                                 ag_nn_linear(embed_dim, vocab, true)});
    }
    ag_module *rnn = IS(model_kind, "gru") ? ag_nn_gru(embed_dim, hidden, layers, true, true, 0, false)
                                           : ag_nn_lstm(embed_dim, hidden, layers, true, true, 0, false);
    return ag_nn_module_dict(3, (const char *[]){"embed", "rnn", "head"},
                             (ag_module *[]){ag_nn_embedding(vocab, embed_dim, AG_NO_PADDING_IDX), rnn,
                                             ag_nn_linear(hidden, vocab, true)});
}

/* The Transformer's logits [B, T, V]: encoder(embed(tokens) + PE[:T]) under the causal mask (a
 * position sees itself and the ones before it, so the padding after a word changes nothing). */
static ag_tensor *transformer_forward(ag_module *m, ag_tensor *tokens) {
    ag_tensor *e = ag_module_forward(ag_module_get_child(m, "embed"), tokens), *y = NULL;
    e = ag_add(e, ag_narrow(positions, 0, 0, ag_size(tokens, 1)));
    if (ag_module_forward_n(ag_module_get_child(m, "encoder"), 1, &e, &(ag_transformer_opts){.is_causal = true}, 1, &y))
        return NULL;
    return ag_module_forward(ag_module_get_child(m, "head"), y);
}

/* Logits [B, T, V] of tokens [B, T]; with h, c not NULL the recurrent state goes in from *h, *c
 * (NULL: zeros) and comes out there (sampling runs one step at a time). */
static ag_tensor *model_forward(ag_module *m, ag_tensor *tokens, ag_tensor **h, ag_tensor **c) {
    if (positions) return transformer_forward(m, tokens);
    ag_tensor *e = ag_module_forward(ag_module_get_child(m, "embed"), tokens), *out = NULL, *hn = NULL, *cn = NULL;
    bool lstm = IS(model_kind, "lstm");
    if (ag_rnn_forward(ag_module_get_child(m, "rnn"), e, h ? *h : NULL, c && lstm ? *c : NULL, NULL, &out,
                       h ? &hn : NULL, c && lstm ? &cn : NULL))
        return NULL;
    if (h) *h = hn;
    if (c) *c = cn;
    return ag_module_forward(ag_module_get_child(m, "head"), out);
}

/* Mean cross-entropy (nats per target) of logits [B, T, V] against targets [B, T]. */
static ag_tensor *lm_loss(ag_tensor *logits, ag_tensor *y) {
    int64_t v = ag_size(logits, 2);
    return ag_cross_entropy(ag_reshape(logits, AG_SHAPE(-1, v)), ag_reshape(y, AG_SHAPE(-1)), NULL);
}

/* Validation loss in nats per character: every target counted once (batches of 512, no graph). */
static double evaluate(ag_module *m, const corpus *c, const int64_t *val_order) {
    ag_no_grad_begin();
    ag_module_eval(m);
    double total = 0;
    int64_t count = 0;
    for (int64_t i = 0; i < c->nval; i += 512) {
        ag_scope_begin();
        int64_t n = c->nval - i < 512 ? c->nval - i : 512, targets = 0;
        ag_tensor *x, *y;
        make_batch(c, val_order + i, n, &x, &y);
        for (int64_t j = 0; j < n; j++) targets += (int64_t)strlen(c->words[val_order[i + j]]) + 1;
        total += ag_item(lm_loss(model_forward(m, x, NULL, NULL), y)) * (double)targets;
        count += targets;
        ag_scope_end();
    }
    ag_module_train(m, true);
    ag_no_grad_end();
    return total / (double)count;
}

/* Prints `count` words drawn one character at a time (softmax at `temperature`, top-k) from "^"
 * until "$" or max_len characters; returns how many of them are not in the word list. */
static int generate(ag_module *m, const corpus *c, int count) {
    ag_no_grad_begin();
    ag_module_eval(m);
    int novel = 0;
    printf("samples (temperature %g, top-k %d):", temperature, top_k);
    for (int s = 0; s < count; s++) {
        ag_scope_begin();
        char word[256];
        int len = 0;
        int64_t tok = 0;
        ag_tensor *h = NULL, *cs = NULL;
        int64_t prefix[256] = {0}; /* the Transformer has no state: it reads "^" and the characters so far */
        while (len < max_len) {
            ag_tensor *logits;
            if (positions)
                logits = ag_select(model_forward(m, ag_from_data(prefix, AG_SHAPE(1, len + 1), AG_I64), NULL, NULL), 1, len);
            else logits = model_forward(m, ag_full(AG_SHAPE(1, 1), (double)tok, AG_I64), &h, &cs);
            ag_tensor *next = logits ? ag_sample_logits(ag_reshape(logits, AG_SHAPE(-1)), temperature, top_k) : NULL;
            if (!next || (tok = (int64_t)ag_item(next)) == 0) break;
            word[len++] = (char)c->byte_of[tok];
            prefix[len] = tok;
        }
        word[len] = '\0';
        bool known = false;
        for (int64_t i = 0; i < c->ntrain + c->nval && !known; i++) known = strcmp(c->words[i], word) == 0;
        novel += !known;
        printf(" %s%s", word, known ? "" : "*");
        ag_scope_end();
    }
    printf("\n(* not in the word list)\n");
    ag_module_train(m, true);
    ag_no_grad_end();
    return novel;
}

int main(int argc, char **argv) {
    int rc = args_parse(argc, argv, "Character-level language model of a word list: Embedding, LSTM, GRU or a causal Transformer, Linear.",
                        args, NARGS(args));
    if (rc >= 0) return rc;
    if (threads > 0) ag_set_num_threads(threads);
    corpus c;
    if (read_words(words_path, &c)) return 1;
    ag_manual_seed((uint64_t)seed);
    ag_module *model = make_model(c.vocab);
    ag_tensor *params[64];
    int np = model ? ag_module_parameters(model, params, 64) : 0;
    ag_adam_options ao = ag_adam_defaults();
    ao.lr = lr;
    ag_optimizer *opt = model ? ag_adam_new(params, np, &ao) : NULL;
    int64_t steps = (c.ntrain + batch - 1) / batch;
    const char *modes[] = {"auto", "bar", "lines", "quiet"};
    ag_progress_mode mode = AG_PROGRESS_AUTO;
    for (int i = 0; i < 4; i++)
        if (IS(progress, modes[i])) mode = (ag_progress_mode)i;
    ag_progress *bar = ag_progress_new(NULL, epochs, steps, mode);
    ag_history *curves = ag_history_new(2, (const char *[]){"train_loss", "val_loss"});
    int64_t *order = malloc(sizeof *order * (size_t)(c.ntrain + c.nval)), *val_order = order ? order + c.ntrain : NULL;
    ag_status st = opt && bar && curves && order ? AG_OK : AG_ERR_NOMEM;
    if (st) fprintf(stderr, "char_lm: %s\n", ag_last_error());
    for (int64_t i = 0; order && i < c.ntrain + c.nval; i++) order[i] = i;
    if (!model) fprintf(stderr, "char_lm: %s\n", ag_last_error());
    printf("%lld training and %lld validation words, %d tokens; %s %d x %d, %lld parameters\n", (long long)c.ntrain,
           (long long)c.nval, c.vocab, model_kind, layers, hidden, (long long)(model ? ag_module_num_parameters(model, false) : 0));
    double train_s = 0, train_cpu_s = 0, val_loss = NAN;
    for (int epoch = 1; !st && epoch <= epochs; epoch++) {
        double t0 = ag_seconds();
        clock_t c0 = clock();
        for (int64_t i = c.ntrain - 1; i > 0; i--) { /* Fisher-Yates from this thread's generator */
            ag_scope_begin();
            int64_t j = (int64_t)(ag_item(ag_rand(AG_SCALAR_SHAPE, AG_F64)) * (double)(i + 1)), t = order[i];
            ag_scope_end();
            order[i] = order[j], order[j] = t;
        }
        for (int64_t i = 0; !st && i < c.ntrain; i += batch) {
            ag_scope_begin(); /* owns the batch, the step's tensors and its graph */
            int64_t n = c.ntrain - i < batch ? c.ntrain - i : batch;
            ag_tensor *x, *y;
            make_batch(&c, order + i, n, &x, &y);
            ag_optimizer_zero_grad(opt);
            ag_tensor *loss = lm_loss(model_forward(model, x, NULL, NULL), y);
            st = ag_backward(loss);
            if (!st && clip > 0) st = ag_clip_grad_norm(params, np, clip, 2, false, NULL);
            if (!st) st = ag_optimizer_step(opt);
            if (!st) ag_progress_step(bar, ag_item(loss), n);
            ag_scope_end();
        }
        train_s += ag_seconds() - t0;
        train_cpu_s += (double)(clock() - c0) / CLOCKS_PER_SEC;
        if (st) break;
        val_loss = evaluate(model, &c, val_order);
        char extra[64];
        snprintf(extra, sizeof extra, "val_loss=%.4f", val_loss);
        ag_progress_epoch_end(bar, extra);
        st = ag_history_append(curves, (double[]){ag_progress_epoch_loss(bar), val_loss});
    }
    char plot_path[1024] = "";
    if (plot[0]) snprintf(plot_path, sizeof plot_path, "%s", plot);
    else if (out_dir[0]) snprintf(plot_path, sizeof plot_path, "%s/char_lm.svg", out_dir);
    if (!st && curves_csv[0]) st = ag_history_save_csv(curves, curves_csv);
    if (!st && plot_path[0]) st = ag_history_plot(curves, plot_path, "Character-level LM: loss (nats per character)");
    int novel = 0;
    if (!st && samples > 0) {
        ag_manual_seed((uint64_t)seed + 1);
        novel = generate(model, &c, samples);
    }
    if (st) fprintf(stderr, "char_lm: %s\n", ag_last_error());
    else
        printf("val_loss=%.4f train_loss=%.4f train_s=%.2f train_cpu_s=%.2f words=%lld vocab=%d params=%lld novel=%d "
               "samples=%d\n",
               val_loss, ag_progress_epoch_loss(bar), train_s, train_cpu_s, (long long)(c.ntrain + c.nval), c.vocab,
               (long long)ag_module_num_parameters(model, false), novel, samples);
    ag_history_free(curves);
    ag_progress_free(bar);
    ag_optimizer_free(opt);
    ag_module_free(model);
    ag_release(positions);
    for (int64_t i = 0; i < c.ntrain + c.nval; i++) free(c.words[i]);
    free(c.words);
    free(order);
    return st ? 1 : ag_live_tensors() == 0 ? 0 : 1;
}

"""char_lm.py - the PyTorch twin of char_lm.c: a character-level language model of
a word list, Embedding(V, E), LSTM (or GRU) with H units or a causal Transformer
encoder (--model transformer: sinusoidal positional encodings, --layers pre-norm
TransformerEncoderLayers of d_model E, --heads heads, feedforward H, a final
LayerNorm), Linear(H or E, V), cross-entropy
on each next character of "^ word" against "word $" (^ and $ one token, 0), Adam
with gradient-norm clipping, the same word list, filter, 9:1 split (every 10th word
to validation), batching (shuffled words, padded to the longest of the batch,
targets padded with -100) and defaults as char_lm.c; then samples new words.  Same
last line: val_loss=... train_loss=... train_s=... train_cpu_s=...

The recurrent layer runs on the padded batch (no packing), as the C program does:
a one-directional layer's outputs at a word's positions do not depend on the
padding after it, and the padded targets are ignored by the loss.

Runs in PyTorch's fastest configuration on a 2-core machine (see
/work/shared/notes/pytorch-baseline.md): OPENBLAS_NUM_THREADS=2 and one torch
thread unless --threads says otherwise.
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")  # before torch loads OpenBLAS

import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--words", default="/usr/share/dict/american-english")
p.add_argument("--filter", default="alpha", choices=["alpha", "all"])
p.add_argument("--limit", type=int, default=0)
p.add_argument("--model", default="lstm", choices=["lstm", "gru", "transformer"])
p.add_argument("--embed", type=int, default=32)
p.add_argument("--hidden", type=int, default=128)
p.add_argument("--layers", type=int, default=1)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--epochs", type=int, default=5)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--clip", type=float, default=1.0)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--samples", type=int, default=20)
p.add_argument("--temperature", type=float, default=1.0)
p.add_argument("--top-k", type=int, default=0)
p.add_argument("--max-len", type=int, default=24)
p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)


def keep(w):
    return 0 < len(w) <= args.max_len and (args.filter == "all" or all("a" <= ch <= "z" for ch in w))


words = []
with open(args.words, "rb") as f:
    for line in f:
        w = line.rstrip(b"\r\n").decode("latin-1")
        if keep(w):
            if args.limit and len(words) >= args.limit:
                break
            words.append(w)
train = [w for i, w in enumerate(words) if i % 10 != 0]
val = [w for i, w in enumerate(words) if i % 10 == 0]
chars = sorted(set("".join(words)))
token = {ch: i + 1 for i, ch in enumerate(chars)}
vocab = len(chars) + 1


def batch_of(ws):
    T = max(len(w) for w in ws) + 1
    x = torch.zeros(len(ws), T, dtype=torch.int64)
    y = torch.full((len(ws), T), -100, dtype=torch.int64)
    for i, w in enumerate(ws):
        t = torch.tensor([token[ch] for ch in w], dtype=torch.int64)
        x[i, 1:len(w) + 1] = t
        y[i, :len(w)] = t
        y[i, len(w)] = 0
    return x, y


def sinusoidal(max_len, d):
    """PE[p, 2i] = sin(p w_i), PE[p, 2i+1] = cos(p w_i), w_i = 10000^(-2i/d) (ag_sinusoidal_positional_encoding)."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    j = torch.arange(d)
    w = torch.exp(-(j - j % 2).double() * math.log(10000.0) / d)
    return torch.where(j % 2 == 0, torch.sin(pos * w), torch.cos(pos * w)).float()


class TransformerLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(vocab, args.embed)
        layer = nn.TransformerEncoderLayer(args.embed, args.heads, args.hidden, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, args.layers, norm=nn.LayerNorm(args.embed),
                                             enable_nested_tensor=False)
        self.head = nn.Linear(args.embed, vocab)
        self.register_buffer("pe", sinusoidal(args.max_len + 1, args.embed), persistent=False)

    def forward(self, x, state=None):
        T = x.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(T)
        return self.head(self.encoder(self.embed(x) + self.pe[:T], mask=mask)), None


class CharLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(vocab, args.embed)
        rnn = nn.LSTM if args.model == "lstm" else nn.GRU
        self.rnn = rnn(args.embed, args.hidden, args.layers, batch_first=True)
        self.head = nn.Linear(args.hidden, vocab)

    def forward(self, x, state=None):
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state


def lm_loss(logits, y):
    return F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))


model = TransformerLM() if args.model == "transformer" else CharLM()
opt = torch.optim.Adam(model.parameters(), lr=args.lr)
nparams = sum(p.numel() for p in model.parameters())
print(f"{len(train)} training and {len(val)} validation words, {vocab} tokens; "
      f"{args.model} {args.layers} x {args.hidden}, {nparams} parameters")


@torch.no_grad()
def evaluate():
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(val), 512):
        ws = val[i:i + 512]
        x, y = batch_of(ws)
        n = sum(len(w) + 1 for w in ws)
        total += lm_loss(model(x)[0], y).item() * n
        count += n
    model.train()
    return total / count


train_s, train_cpu_s, val_loss, train_loss = 0.0, 0.0, float("nan"), float("nan")
steps = (len(train) + args.batch - 1) // args.batch
for epoch in range(1, args.epochs + 1):
    t0, c0 = time.perf_counter(), time.process_time()
    order = torch.randperm(len(train)).tolist()
    total, seen = 0.0, 0
    for i in range(0, len(train), args.batch):
        x, y = batch_of([train[j] for j in order[i:i + args.batch]])
        opt.zero_grad(set_to_none=True)
        loss = lm_loss(model(x)[0], y)
        loss.backward()
        if args.clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        total += loss.item() * x.shape[0]
        seen += x.shape[0]
    train_s += time.perf_counter() - t0
    train_cpu_s += time.process_time() - c0
    train_loss = total / seen
    val_loss = evaluate()
    print(f"epoch {epoch}/{args.epochs}  loss {train_loss:.4f}  {train_s:.2f} s  val_loss={val_loss:.4f}", flush=True)


@torch.no_grad()
def generate(count):
    model.eval()
    known, novel, out = set(words), 0, []
    for _ in range(count):
        tok, state, w, prefix = 0, None, "", [0]
        while len(w) < args.max_len:
            if args.model == "transformer":  # no state: reads "^" and the characters so far
                logits = model(torch.tensor([prefix]))[0][0, -1]
            else:
                logits, state = model(torch.tensor([[tok]]), state)
            logits = logits.reshape(-1)
            if args.temperature == 0:
                tok = int(logits.argmax())
            else:
                if args.top_k > 0:
                    cut = logits.topk(min(args.top_k, vocab)).values[-1]
                    logits = logits.masked_fill(logits < cut, float("-inf"))
                tok = int(torch.multinomial(F.softmax(logits / args.temperature, -1), 1))
            if tok == 0:
                break
            w += chars[tok - 1]
            prefix.append(tok)
        novel += w not in known
        out.append(w + ("" if w in known else "*"))
    print(f"samples (temperature {args.temperature:g}, top-k {args.top_k}): " + " ".join(out))
    print("(* not in the word list)")
    return novel


torch.manual_seed(args.seed + 1)
novel = generate(args.samples) if args.samples > 0 else 0
print(f"val_loss={val_loss:.4f} train_loss={train_loss:.4f} train_s={train_s:.2f} train_cpu_s={train_cpu_s:.2f} words={len(words)} vocab={vocab} "
      f"params={nparams} novel={novel} samples={args.samples}")
